"""Threads that run blocking commands for the event loop, at little cost to the loop.

`CommandThreads.run` queues the call on a `queue.SimpleQueue` and awaits a plain asyncio
future, which the thread resolves through ``call_soon_threadsafe``. ``run_in_executor``
does the same work with a `concurrent.futures.Future` chained to an asyncio one and an
executor's locks on the way; this skips them, and the event loop is what limits a busy
process. The threads are daemons started at the first call: a server waits for its
requests in flight before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _resolve(result: Any, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(error: BaseException, future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.set_exception(error)


class CommandThreads:
    def __init__(self, count: int, name: str = "command") -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = False
        self._start_lock = threading.Lock()

    async def run(self, command: Callable[[], T]) -> T:
        """The result of `command()`, called on one of the threads."""
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, command))
        return await future

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            for index in range(self._count):
                threading.Thread(
                    target=self._serve, name=f"{self._name}_{index}", daemon=True
                ).start()
            self._started = True

    def _serve(self) -> None:
        while True:
            loop, future, command = self._jobs.get()
            try:
                result = command()
            except BaseException as error:
                self._hand_back(loop, _fail, error, future)
            else:
                self._hand_back(loop, _resolve, result, future)

    @staticmethod
    def _hand_back(
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[Any, asyncio.Future[Any]], None],
        value: Any,
        future: asyncio.Future[Any],
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(callback, value, future)
