"""uvicorn worker processes that each listen on a socket of their own (``SO_REUSEPORT``).

uvicorn's ``--workers`` share one listening socket, and the worker that wakes first
accepts every connection waiting: a burst of keep-alive clients (a checkpoint service's
pool, a load balancer's) lands on one process, and one core, while the others idle. Here
the parent reserves the port and each worker binds a socket of its own to it, so the
kernel spreads new connections over the workers. A worker that dies is started again; one
that dies within `STARTUP_GRACE_S` of its start stops the server instead of looping.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE

STARTUP_GRACE_S = 5.0

logger = logging.getLogger("uvicorn.error")


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other sockets of this user may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:
    sock = shared_port_socket(host, port)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])


def run(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve `app` (an import string) with `workers` processes; `options` go to
    `uvicorn.Config`. Returns when the server is stopped (SIGINT, SIGTERM)."""
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
        return
    # A Config configures logging: the supervisor's messages then look like the workers'.
    uvicorn.Config(app, host=host, port=port, **options)
    with shared_port_socket(host, port) as reserved:
        _Supervisor(app, host, reserved.getsockname()[1], workers, options).run()


class _Supervisor:
    def __init__(
        self, app: str, host: str, port: int, workers: int, options: dict[str, Any]
    ) -> None:
        self._args = (app, host, port, options)
        self._count = workers
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[BaseProcess, float]] = {}
        self._stopping = False
        self._failed = False

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        for _ in range(self._count):
            self._start()
        logger.info("serving on port %d with %d workers", self._args[2], self._count)
        while self._workers:
            sentinels = {p.sentinel: pid for pid, (p, _) in self._workers.items()}
            for ready in wait(list(sentinels)):
                self._ended(sentinels[cast(int, ready)])
        if self._failed:
            sys.exit(STARTUP_FAILURE)

    def _start(self) -> None:
        process = self._context.Process(target=_worker, args=self._args, daemon=False)
        process.start()
        assert process.pid is not None
        self._workers[process.pid] = (process, time.monotonic())

    def _ended(self, pid: int) -> None:
        process, started = self._workers.pop(pid)
        process.join()
        if self._stopping:
            return
        if time.monotonic() - started < STARTUP_GRACE_S:
            logger.error("worker %d exited with %s while starting: stopping", pid, process.exitcode)
            self._failed = True
            self._stop()
            return
        logger.warning("worker %d exited with %s: starting another", pid, process.exitcode)
        self._start()

    def _stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stopping = True
        for process, _ in self._workers.values():
            if process.is_alive():
                process.terminate()


def main(argv: list[str] | None = None) -> None:
    """``python -m api.serving APP``: the benchmark harness serves apps this way too."""
    parser = argparse.ArgumentParser(prog="python -m api.serving")
    parser.add_argument("app", help="import string, module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", dest="access_log", action="store_true", default=True)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--log-config", help="uvicorn's logging configuration file")
    args = parser.parse_args(argv)
    logging_options = {} if args.log_config is None else {"log_config": args.log_config}
    run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        factory=args.factory,
        log_level=args.log_level,
        access_log=args.access_log,
        **logging_options,
    )


if __name__ == "__main__":
    main()
