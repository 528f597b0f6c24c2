"""Running a uvicorn app as a subprocess on a free loopback port, for the duration of a run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_status(host: str, port: int, path: str, timeout_s: float = 1.0) -> int | None:
    """The status of a plain GET, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    return int(parts[1])


@dataclass
class Server:
    """A running uvicorn process group."""

    app: str
    host: str
    port: int
    workers: int
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the whole group (master and workers), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_server(
    app: str,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    factory: bool = False,
    ready_path: str = "/",
    ready_timeout_s: float = 30.0,
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """Starts `app` (an import string) as `vaxreg serve` runs the API: uvicorn (httptools
    and uvloop) under `api.serving`, each worker with a listening socket of its own. No
    access log. Returns once `ready_path` answers with any HTTP status.
    """
    host = "127.0.0.1"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "api.serving",
        app,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        *(("--factory",) if factory else ()),
        *extra_args,
    ]
    log: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if not isinstance(log, int):
            log.close()
    server = Server(app, host, port, workers, process, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{app} exited with {process.returncode} before answering:\n{server.log_tail()}"
            )
        if http_status(host, port, ready_path) is not None:
            return server
        time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"{app} did not answer within {ready_timeout_s}s:\n{server.log_tail()}")


@contextlib.contextmanager
def running_server(app: str, **kwargs: Any) -> Iterator[Server]:
    """`start_server` as a context manager that always stops the server."""
    server = start_server(app, **kwargs)
    try:
        yield server
    finally:
        server.stop()
