"""A share of a pure computation done by a forked child on another core.

A rebuild replays shares of some contexts' events, and derives every citizen it holds at
the end of its replay: work on data already in memory. A child forked then sees that
data without copying it (pages are shared until written), computes its share while the
parent computes the rest, and sends back results that :mod:`marshal` can carry (bytes,
numbers, strings, tuples, sets, dicts). The child runs without the cyclic collector
(whose traversals would copy every page), reads only through connections of its own,
writes to its pipe, then leaves with ``os._exit``: it uses no lock, connection or file
of the parent's. Whatever goes wrong in it, the parent gets None and computes the share
itself, so the results never depend on it.
"""

from __future__ import annotations

import gc
import logging
import marshal
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, NoReturn

logger = logging.getLogger(__name__)

GRACE_SECONDS = 30.0
SLOWDOWN = 3.0
"""A child gets this many times as long as the parent took for its own share (at least
the grace) before the parent gives up on it and computes the child's share itself."""


def spare_cores() -> int:
    """Cores this process may run on besides the one it runs on (0 without fork)."""
    if not hasattr(os, "fork"):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return cores - 1


class ForkedShare:
    """``compute()`` running in a forked child from construction; :meth:`result` waits
    for what it returned, or None if the child failed."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._pid: int | None = None
        try:
            readable, writable = os.pipe()
        except OSError as error:
            logger.warning("no pipe for a forked share (%s): computing it here", error)
            return
        try:
            self._pid = os.fork()
        except OSError as error:
            os.close(readable)
            os.close(writable)
            logger.warning("could not fork a share (%s): computing it here", error)
            return
        if self._pid == 0:
            _run_child(compute, readable, writable)
        os.close(writable)
        self._received: list[bytes] = []
        self._reader = threading.Thread(
            target=self._drain, args=(readable,), name="forked-share", daemon=True
        )
        self._reader.start()

    def _drain(self, readable: int) -> None:
        """Reads the child's results as they come, so that it never waits on the pipe."""
        with os.fdopen(readable, "rb") as pipe:
            self._received.append(pipe.read())

    def result_beside(self, our_seconds: float) -> Any | None:
        """:meth:`result`, waiting as long as a parent that took `our_seconds` for its own
        share may."""
        return self.result(timeout=max(GRACE_SECONDS, SLOWDOWN * our_seconds))

    def result(self, timeout: float) -> Any | None:
        """What the child computed, or None if it failed or is not done within `timeout`
        seconds (it is killed then)."""
        if self._pid is None:
            return None
        self._reader.join(timeout)
        if self._reader.is_alive():
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            logger.warning("a forked share took over %.0f s: computing it here", timeout)
            return None
        _, status = os.waitpid(self._pid, 0)
        if status == 0 and self._received:
            try:
                return marshal.loads(self._received.pop())
            except (EOFError, ValueError, TypeError):
                pass
        logger.warning("a forked share failed (wait status %d): computing it here", status)
        return None


def _run_child(compute: Callable[[], Any], readable: int, writable: int) -> NoReturn:
    status = 1
    try:
        gc.disable()
        os.close(readable)
        data = marshal.dumps(compute())
        with os.fdopen(writable, "wb") as pipe:
            pipe.write(data)
        status = 0
    finally:
        os._exit(status)
