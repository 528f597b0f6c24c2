"""Reads from Redis over one pipelined connection per event loop, for the API's read models.

redis.asyncio spends about 40 µs of CPU on every command (a connection taken from its
pool and given back, retry and timeout wrappers, instrumentation): more than everything
else a checkpoint lookup does. `PipelinedRedis` writes the commands issued during one
pass of the event loop together on one connection and resolves the callers' futures in
order as the replies arrive (Redis answers a connection's commands in the order sent),
so concurrent requests share the connection's round trips and a read costs a few µs.

It is for reads that may simply fail: a lost connection fails every command in flight
with redis-py's `ConnectionError` and the next command connects again; a connection
that leaves its oldest command unanswered for `timeout` seconds is dropped the same
way, with `TimeoutError`. No command is retried, so nothing is ever sent twice.
Replies are RESP2 values: bytes, int, None or lists of them; an error reply raises
`ResponseError`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

DEFAULT_PORT = 6379
DEFAULT_TIMEOUT_SECONDS = 1.0
Reply = bytes | int | None | list[Any]


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


def encode_command(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buffer: bytes | bytearray, start: int) -> tuple[Reply | ResponseError, int]:
    """The reply beginning at `start` and the offset after it; `_Incomplete` when the
    buffer ends first. An error reply is returned (not raised) as a `ResponseError`."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind = buffer[start]
    line = bytes(buffer[start + 1 : end])
    if kind == 0x24:  # $
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if stop + 2 > len(buffer):
            raise _Incomplete
        return bytes(buffer[end + 2 : stop]), stop + 2
    if kind == 0x2A:  # *
        count = int(line)
        if count < 0:
            return None, end + 2
        items: list[Any] = []
        position = end + 2
        for _ in range(count):
            item, position = parse_reply(buffer, position)
            items.append(item)
        return items, position
    if kind == 0x3A:  # :
        return int(line), end + 2
    if kind == 0x2B:  # +
        return line, end + 2
    if kind == 0x2D:  # -
        return ResponseError(line.decode(errors="replace")), end + 2
    raise RedisConnectionError(f"unexpected reply from Redis: {bytes(buffer[start:end])!r}")


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, replies handed out in the same order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer = bytearray()
        self.lost: Exception | None = None
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def send(self, payload: bytes, replies: int) -> list[asyncio.Future[Any]]:
        if self.lost is not None or self.transport is None:
            raise RedisConnectionError("the connection to Redis is closed")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout
        futures = [loop.create_future() for _ in range(replies)]
        self.waiting.extend((future, deadline) for future in futures)
        if not self._outgoing:
            loop.call_soon(self._write)
        self._outgoing.append(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_at(loop.time() + self.timeout, self._check_deadline)
        return futures

    def _write(self) -> None:
        """Everything sent during one pass of the event loop, in one write."""
        if self.transport is not None and self.lost is None:
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        position = 0
        try:
            while position < len(self.buffer) and self.waiting:
                reply, position = parse_reply(self.buffer, position)
                future, _ = self.waiting.popleft()
                if future.done():
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except _Incomplete:
            pass
        except RedisConnectionError as error:
            self._fail(error)
            return
        del self.buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the connection to Redis was lost: {exc or 'closed'}"))

    def close(self) -> None:
        self._fail(RedisConnectionError("the connection to Redis was closed"))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self.waiting or self.lost is not None:
            return
        _, deadline = self.waiting[0]
        if time.monotonic() >= deadline:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(
            loop.time() + deadline - time.monotonic(), self._check_deadline
        )

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """Commands to one Redis server, pipelined on one connection per event loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        tls: bool = False,
        unix_socket: str | None = None,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout = timeout
        self.tls = tls
        self.unix_socket = unix_socket
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Task[_Connection]] = {}

    @classmethod
    def from_url(cls, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> PipelinedRedis:
        """A client for ``redis://[[user]:password@]host[:port][/db]``, the same with
        ``rediss://`` (TLS), or ``unix:///path/to/socket[?db=N]``."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL is redis://, rediss:// or unix://, not {url!r}")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            query = dict(pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
            return cls(
                db=int(query.get("db") or 0),
                username=username,
                password=password,
                timeout=timeout,
                unix_socket=parts.path,
            )
        path = parts.path.strip("/")
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or DEFAULT_PORT,
            db=int(path) if path else 0,
            username=username,
            password=password,
            timeout=timeout,
            tls=parts.scheme == "rediss",
        )

    async def execute_command(self, *args: bytes | str | int | float) -> Any:
        """One command's reply."""
        (reply,) = await self.execute_many([args])
        return reply

    async def execute_many(
        self, commands: list[tuple[bytes | str | int | float, ...]]
    ) -> list[Any]:
        """The replies to `commands`, written together."""
        connection = await self._connection()
        payload = b"".join(encode_command(command) for command in commands)
        futures = connection.send(payload, len(commands))
        return [await future for future in futures]

    async def aclose(self) -> None:
        """Close this event loop's connection."""
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        if connection is not None:
            connection.close()

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is not None and connection.lost is None:
            return connection
        pending = self._connecting.get(loop)
        if pending is None:
            pending = loop.create_task(self._connect(loop))
            self._connecting[loop] = pending
            pending.add_done_callback(self._connected)
        connection = await asyncio.shield(pending)
        self._connections[loop] = connection
        return connection

    def _connected(self, attempt: asyncio.Task[_Connection]) -> None:
        """Forget a finished attempt; its error reaches every caller that still waits."""
        self._connecting.pop(attempt.get_loop(), None)
        if not attempt.cancelled():
            attempt.exception()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(self.timeout):
                if self.unix_socket is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self.timeout), self.unix_socket
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.timeout),
                        self.host,
                        self.port,
                        ssl=ssl.create_default_context() if self.tls else None,
                    )
        except TimeoutError as error:
            raise RedisTimeoutError(f"connecting to Redis took over {self.timeout:g} s") from error
        except OSError as error:
            raise RedisConnectionError(f"cannot connect to Redis: {error}") from error
        setup: list[tuple[bytes | str | int | float, ...]] = []
        if self.password is not None:
            setup.append(("AUTH", *((self.username,) if self.username else ()), self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        if setup:
            replies = connection.send(b"".join(encode_command(c) for c in setup), len(setup))
            try:
                for reply in replies:
                    await reply
            except ResponseError:
                connection.close()
                raise
        return connection
