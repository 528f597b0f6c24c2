"""HTTP load generation against a loopback URL: a `wrk` driver and an asyncio client.

`run_wrk` is for read loads (GET of random paths from a list, fixed connections).
`run_closed_loop` (fixed concurrency) and `run_open_loop` (fixed arrival rate, latency
counted from the scheduled send time, so a stalled server cannot hide its queueing) are
the Python generator, for POST command loads and lag measurements. It speaks HTTP/1.1
over raw asyncio streams with keep-alive, one connection per concurrent request.
`details["client_cpu_fraction"]` is the CPU time of the generating process over the run's
wall time: near 1.0 means the generator had a core to itself and may have been the limit.

Its own ceiling (`python_loadgen` in `bench.ceilings`, measured against the bare ASGI
endpoint of `bench.asgi_ceiling`) shows whether it can be the bottleneck of a scenario:
a scenario whose throughput is well below that ceiling was not limited by the generator.
Every run is bounded by a duration; Python generator runs also by a request count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from bench.results import LatencyRecorder, SeriesPoint

T = TypeVar("T")

WRK_MARKER = "VAXREG_WRK"
WRK_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
WRK_ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


RequestFactory = Callable[[int], Request]
"""Builds the i-th request of a run."""


@dataclass(frozen=True)
class Response:
    index: int
    status: int
    body: bytes
    scheduled_at: float
    sent_at: float
    received_at: float


ResponseHook = Callable[[Response], None]


@dataclass
class LoadResult:
    """Throughput and latency of one load run; `errors` counts failures and non-2xx/3xx."""

    tool: str
    requests: int
    errors: int
    duration_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    status_counts: dict[int, int] = field(default_factory=dict)
    latency: LatencyRecorder | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def series_point(self, concurrency: int) -> SeriesPoint:
        return {
            "concurrency": concurrency,
            "throughput": self.throughput,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
        }

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly digest for a result's `details`."""
        return {
            "tool": self.tool,
            "requests": self.requests,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "throughput": round(self.throughput, 1),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            **self.details,
        }


def _check_loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"load targets must be plain http on loopback, got {url!r}")
    return host, parts.port or 80


# --- wrk ---------------------------------------------------------------------------------


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def write_paths(paths: Iterable[str], file: str) -> int:
    """Writes one request path per line; returns how many."""
    n = 0
    with open(file, "w", encoding="utf-8") as f:
        for path in paths:
            if not path.startswith("/") or "\n" in path:
                raise ValueError(f"not a request path: {path!r}")
            f.write(path + "\n")
            n += 1
    return n


def wrk_script(
    *,
    paths_file: str | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
) -> str:
    """A wrk Lua script: random paths from `paths_file` (else a fixed request to the URL),
    the given method, headers and body, and machine-readable figures from `done()`.
    """
    header_items = ", ".join(
        f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()
    )
    lines = [
        f"local method = {_lua_string(method)}",
        f"local body = {_lua_string(body) if body is not None else 'nil'}",
        f"local headers = {{{header_items}}}",
        "local next_id = 0",
        "function setup(thread)",
        "  next_id = next_id + 1",
        "  thread:set('thread_id', next_id)",
        "end",
    ]
    if paths_file is None:
        lines += [
            "wrk.method = method",
            "wrk.body = body",
            "for k, v in pairs(headers) do wrk.headers[k] = v end",
        ]
    else:
        lines += [
            "local paths = {}",
            "function init(args)",
            "  math.randomseed(os.time() * 1000 + (thread_id or 0))",
            f"  for line in io.lines({_lua_string(paths_file)}) do",
            "    if #line > 0 then paths[#paths + 1] = line end",
            "  end",
            "  if #paths == 0 then paths[1] = wrk.path end",
            "end",
            "function request()",
            "  return wrk.format(method, paths[math.random(#paths)], headers, body)",
            "end",
        ]
    counters = (
        "requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d"
    )
    lines += [
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        f'  io.write(string.format("{WRK_MARKER} {counters}\\n", summary.requests,',
        "    summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))",
        f"  for _, p in ipairs({{{', '.join(f'{p:g}' for p in WRK_PERCENTILES)}}}) do",
        f'    io.write(string.format("{WRK_MARKER}_LATENCY p=%g us=%d\\n", p,'
        " latency:percentile(p)))",
        "  end",
        f'  io.write(string.format("{WRK_MARKER}_LATENCY_STATS min_us=%d max_us=%d'
        ' mean_us=%.1f\\n", latency.min, latency.max, latency.mean))',
        "end",
    ]
    return "\n".join(lines) + "\n"


_PAIR = re.compile(r"(\w+)=([-\d.eE+]+)")


def parse_wrk_output(text: str) -> LoadResult:
    """Reads the figures printed by `wrk_script`'s `done()` from wrk's output."""
    counters: dict[str, float] = {}
    percentiles: dict[float, float] = {}
    stats: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(f"{WRK_MARKER}_LATENCY_STATS "):
            stats = {k: float(v) for k, v in _PAIR.findall(line)}
        elif line.startswith(f"{WRK_MARKER}_LATENCY "):
            pair = dict(_PAIR.findall(line))
            percentiles[float(pair["p"])] = float(pair["us"]) / 1000.0
        elif line.startswith(f"{WRK_MARKER} "):
            counters = {k: float(v) for k, v in _PAIR.findall(line)}
    if "requests" not in counters or "duration_us" not in counters:
        raise ValueError("no wrk summary in the output (was the script's done() run?)")
    requests = int(counters["requests"])
    errors_by_kind = {k: int(counters.get(k, 0)) for k in WRK_ERROR_KINDS}
    return LoadResult(
        tool="wrk",
        requests=requests,
        errors=sum(errors_by_kind.values()),
        duration_s=counters["duration_us"] / 1e6,
        p50_ms=percentiles.get(50.0),
        p95_ms=percentiles.get(95.0),
        p99_ms=percentiles.get(99.0),
        details={
            "errors_by_kind": errors_by_kind,
            "p90_ms": percentiles.get(90.0),
            "p99_9_ms": percentiles.get(99.9),
            "max_ms": stats["max_us"] / 1000.0 if "max_us" in stats else None,
            "mean_ms": stats["mean_us"] / 1000.0 if "mean_us" in stats else None,
        },
    )


def run_wrk(
    url: str,
    *,
    duration_s: float,
    connections: int = 64,
    threads: int = 2,
    paths: Sequence[str] | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    timeout_s: float = 5.0,
) -> LoadResult:
    """Runs wrk against a loopback URL for `duration_s` (whole seconds) and returns its figures.

    wrk has no request-count bound that keeps its throughput figure honest (its clock
    runs for the whole duration), so runs are bounded by duration only.
    """
    _check_loopback(url)
    if not wrk_available():
        raise RuntimeError("wrk is not installed")
    seconds = max(1, round(duration_s))
    with tempfile.TemporaryDirectory(prefix="vaxreg-wrk-") as tmp:
        paths_file = None
        if paths:
            paths_file = os.path.join(tmp, "paths.txt")
            write_paths(paths, paths_file)
        script = os.path.join(tmp, "script.lua")
        with open(script, "w", encoding="utf-8") as f:
            f.write(
                wrk_script(
                    paths_file=paths_file,
                    method=method,
                    headers=headers,
                    body=body,
                )
            )
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{max(connections, threads)}",
            f"-d{seconds}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            script,
            url,
        ]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    result = parse_wrk_output(proc.stdout)
    result.details.update(connections=connections, threads=threads)
    return result


# --- the asyncio generator ---------------------------------------------------------------


class HttpError(Exception):
    pass


class _Connection:
    """One keep-alive HTTP/1.1 connection, reopened after a failure or `Connection: close`."""

    def __init__(self, host: str, port: int, base_headers: bytes) -> None:
        self.host = host
        self.port = port
        self.base_headers = base_headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: Request) -> tuple[int, bytes]:
        reader, writer = await self._open()
        extra = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        head = (
            f"{request.method} {request.path} HTTP/1.1\r\n"
            f"Content-Length: {len(request.body)}\r\n{extra}"
        ).encode("latin-1")
        writer.write(head + self.base_headers + request.body)
        status_and_headers = await reader.readuntil(b"\r\n\r\n")
        status, length, chunked, close = _parse_head(status_and_headers)
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        else:
            body = await reader.read()
            close = True
        if close:
            self.close()
        return status, body


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    status = int(status_line[1])
    length: int | None = None
    chunked = False
    close = status_line[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class _Tally:
    recorder: LatencyRecorder = field(default_factory=LatencyRecorder)
    service: LatencyRecorder = field(default_factory=LatencyRecorder)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    cpu_start: float = field(default_factory=time.process_time)

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        kind = type(exc).__name__
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1

    def result(self, duration_s: float, details: dict[str, Any]) -> LoadResult:
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 400)
        summary = self.recorder.summary()
        completed = sum(self.statuses.values())
        return LoadResult(
            tool="python",
            requests=completed,
            errors=self.failures + bad,
            duration_s=duration_s,
            p50_ms=summary["p50_ms"],
            p95_ms=summary["p95_ms"],
            p99_ms=summary["p99_ms"],
            status_counts=dict(self.statuses),
            latency=self.recorder,
            details={
                **details,
                "failures": dict(self.failure_kinds),
                "latency_exact": self.recorder.exact,
                "client_cpu_fraction": round(
                    (time.process_time() - self.cpu_start) / max(duration_s, 1e-9), 3
                ),
            },
        )


def _base_headers(host: str, port: int, headers: Mapping[str, str] | None) -> bytes:
    lines = [f"Host: {host}:{port}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _exchange(
    conn: _Connection,
    index: int,
    request: Request,
    scheduled: float,
    tally: _Tally,
    timeout_s: float,
    on_response: ResponseHook | None,
) -> None:
    sent = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await conn.send(request)
    except (
        OSError,
        EOFError,
        TimeoutError,
        ValueError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        HttpError,
    ) as exc:
        conn.close()
        tally.fail(exc)
        return
    received = time.perf_counter()
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    tally.recorder.record((received - scheduled) * 1000.0)
    tally.service.record((received - sent) * 1000.0)
    if on_response is not None:
        on_response(Response(index, status, body, scheduled, sent, received))


async def closed_loop(
    url: str,
    make_request: RequestFactory,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """`concurrency` connections, each sending its next request as soon as the last returns."""
    host, port = _check_loopback(url)
    base = _base_headers(host, port, headers)
    tally = _Tally()
    issued = 0
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker() -> None:
        nonlocal issued
        conn = _Connection(host, port, base)
        try:
            while time.perf_counter() < deadline and (
                max_requests is None or issued < max_requests
            ):
                index = issued
                issued += 1
                now = time.perf_counter()
                await _exchange(
                    conn, index, make_request(index), now, tally, timeout_s, on_response
                )
        finally:
            conn.close()

    async with asyncio.timeout(duration_s + timeout_s + 5.0):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return tally.result(elapsed, {"concurrency": concurrency, "mode": "closed"})


async def open_loop(
    url: str,
    make_request: RequestFactory,
    *,
    rate: float,
    duration_s: float,
    max_requests: int | None = None,
    max_in_flight: int = 256,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """Request i is due at start + i/rate; latency runs from that due time.

    At most `max_in_flight` connections are open; when all are busy, due requests wait
    (and that wait counts in their latency). `service_p99_ms` in the details is the time
    on the wire only.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    host, port = _check_loopback(url)
    base = _base_headers(host, port, headers)
    tally = _Tally()
    total = int(rate * duration_s)
    if max_requests is not None:
        total = min(total, max_requests)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    start = time.perf_counter()
    max_lag = 0.0

    async def worker() -> None:
        conn = _Connection(host, port, base)
        try:
            while (item := await queue.get()) is not None:
                index, due = item
                await _exchange(
                    conn, index, make_request(index), due, tally, timeout_s, on_response
                )
        finally:
            conn.close()

    async def schedule() -> None:
        nonlocal max_lag
        index = 0
        while index < total:
            now = time.perf_counter()
            due_count = min(total, int((now - start) * rate) + 1)
            while index < due_count:
                queue.put_nowait((index, start + index / rate))
                index += 1
            max_lag = max(max_lag, queue.qsize() / rate)
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        for _ in range(max_in_flight):
            queue.put_nowait(None)

    async with asyncio.timeout(duration_s + timeout_s + 5.0):
        await asyncio.gather(schedule(), *(worker() for _ in range(max_in_flight)))
    elapsed = time.perf_counter() - start
    return tally.result(
        elapsed,
        {
            "mode": "open",
            "rate": rate,
            "scheduled": total,
            "max_in_flight": max_in_flight,
            "max_backlog_s": round(max_lag, 3),
            "service_p50_ms": tally.service.percentile(50),
            "service_p99_ms": tally.service.percentile(99),
        },
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on uvloop when it is installed."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def run_closed_loop(url: str, make_request: RequestFactory, **kwargs: Any) -> LoadResult:
    """Synchronous `closed_loop`."""
    return run_async(closed_loop(url, make_request, **kwargs))


def run_open_loop(url: str, make_request: RequestFactory, **kwargs: Any) -> LoadResult:
    """Synchronous `open_loop`."""
    return run_async(open_loop(url, make_request, **kwargs))


def run_http_load(
    url: str,
    *,
    duration_s: float,
    connections: int = 64,
    paths: Sequence[str] | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    warn: Callable[[str], None] = print,
) -> LoadResult:
    """`run_wrk` when wrk is installed, else the Python closed loop with the same requests
    (after calling `warn`: its ceiling is lower, see `python_loadgen`).
    """
    if wrk_available():
        return run_wrk(
            url,
            duration_s=duration_s,
            connections=connections,
            paths=paths,
            method=method,
            headers=headers,
            body=body,
        )
    warn("wrk is not installed; falling back to the Python load generator")
    targets = list(paths) if paths else [urlsplit(url).path or "/"]
    encoded = (body or "").encode()
    rng = random.Random()
    return run_closed_loop(
        url,
        lambda _: Request(method, rng.choice(targets), encoded),
        concurrency=connections,
        duration_s=duration_s,
        headers=headers,
    )


def random_paths(
    paths: Sequence[str], *, method: str = "GET", seed: int | None = None
) -> RequestFactory:
    """A factory picking a random path of `paths` for each request."""
    rng = random.Random(seed)

    def make(_: int) -> Request:
        return Request(method, rng.choice(paths))

    return make


def fixed_request(request: Request) -> RequestFactory:
    return lambda _: request
