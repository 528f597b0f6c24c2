"""Throwaway PostgreSQL and Redis servers on free loopback ports, for fault runs and tests.

Shared servers (given by ``VAXREG_TEST_POSTGRES_URL`` / ``VAXREG_TEST_REDIS_URL``) are never
flushed or restarted; tests get a database or key prefix of their own and it is removed
afterwards. Throwaway servers are private processes that tests may stop, kill and restart.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_UNPRIVILEGED_USER = "postgres"
_START_ATTEMPTS = 5


class ServerUnavailableError(RuntimeError):
    """A test server cannot be reached or started."""


def postgres_server_url() -> str:
    return os.environ.get("VAXREG_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def redis_server_url() -> str:
    return os.environ.get("VAXREG_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def find_binary(name: str) -> str:
    """Locate ``name`` on PATH, then in the newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found

    def version(directory: str) -> float:
        try:
            return float(Path(directory).parent.name)
        except ValueError:
            return 0.0

    for directory in sorted(glob.glob(_PG_BIN_GLOB), key=version, reverse=True):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServerUnavailableError(f"{name!r} not found on PATH or under {_PG_BIN_GLOB}")


def with_database(server_url: str, database: str) -> str:
    """``server_url`` with its path replaced by ``database``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin_connection(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise ServerUnavailableError(f"PostgreSQL at {server_url} is unreachable: {exc}") from exc


def create_database(server_url: str, name: str | None = None) -> str:
    """Create a database on the server at ``server_url`` and return its URL."""
    database = name or unique_name("vaxreg_test_")
    with _admin_connection(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return with_database(server_url, database)


def drop_database(server_url: str, name: str) -> None:
    """Drop ``name`` (if it exists), disconnecting any remaining sessions."""
    with _admin_connection(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_exists(server_url: str, name: str) -> bool:
    with _admin_connection(server_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServerUnavailableError(f"Redis at {url} is unreachable: {exc}") from exc
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def delete_prefixed_keys(url: str, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (SCAN based); return how many went."""
    if not prefix:
        raise ValueError("refusing to delete keys for an empty prefix")
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{_glob_escape(prefix)}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _ThrowawayServer(ABC):
    """A server of one's own in `directory`: started on entering a ``with`` block, killed
    and its files removed on leaving it (or when it fails to start)."""

    directory: Path

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def kill(self) -> None: ...

    def close(self) -> None:
        """Kill the server and remove its directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ThrowawayRedis(_ThrowawayServer):
    """A private ``redis-server`` on a free port with its own directory.

    Without ``aof`` nothing is persisted, so a restart starts empty. With ``aof`` the
    append-only file is fsynced according to ``appendfsync`` and survives restarts and kills.
    """

    def __init__(
        self,
        *,
        aof: bool = False,
        appendfsync: Literal["always", "everysec", "no"] = "always",
    ) -> None:
        self.binary = find_binary("redis-server")
        self.aof = aof
        self.appendfsync = appendfsync
        self.directory = Path(tempfile.mkdtemp(prefix="vaxreg-redis-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def _command(self) -> list[str]:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
            "--save",
            "",
        ]
        if self.aof:
            command += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            command += ["--appendonly", "no"]
        return command

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        return False

    def start(self, timeout: float = 15.0) -> None:
        """Start the server; the first start moves to another port if this one is taken."""
        if self.running:
            return
        first_start = not self._started
        for _ in range(_START_ATTEMPTS if first_start else 1):
            process = subprocess.Popen(
                self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready(process, timeout):
                self._process = process
                self._started = True
                return
            self._terminate(process, signal.SIGKILL)
            if first_start:
                self.port = free_port()
        raise ServerUnavailableError(
            f"redis-server did not start on port {self.port}:\n{_tail(self.log_path)}"
        )

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM)."""
        if self._process is not None:
            self._terminate(self._process, signal.SIGTERM)
            self._process = None

    def kill(self) -> None:
        """Crash the server (SIGKILL)."""
        if self._process is not None:
            self._terminate(self._process, signal.SIGKILL)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class ThrowawayPostgres(_ThrowawayServer):
    """A private PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free port.

    Trust authentication for user ``postgres``, sockets in the cluster's own directory,
    ``fsync=off``. When running as root, the cluster is owned and run by the unprivileged
    ``postgres`` user, since PostgreSQL refuses to run as root.
    """

    def __init__(self) -> None:
        self.initdb = find_binary("initdb")
        self.pg_ctl = find_binary("pg_ctl")
        self.directory = Path(tempfile.mkdtemp(prefix="vaxreg-pg-"))
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.port = free_port()
        self._running = False
        self._initialised = False
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(_UNPRIVILEGED_USER)
            except KeyError as exc:
                raise ServerUnavailableError(
                    f"running as root and there is no {_UNPRIVILEGED_USER!r} user to run "
                    "initdb/pg_ctl as"
                ) from exc
            shutil.chown(self.directory, user=_UNPRIVILEGED_USER)
            self._run_as = [find_binary("runuser"), "-u", _UNPRIVILEGED_USER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._running

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = [*self._run_as, *args]
        result = subprocess.run(
            command,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ServerUnavailableError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{_tail(self.log_path)}"
            )

    def _init_cluster(self) -> None:
        self._run(
            self.initdb,
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._initialised = True

    def _pg_ctl_start(self) -> None:
        options = f"-k {self.directory} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off"
        self._run(
            self.pg_ctl,
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def start(self) -> None:
        """Start the cluster (running ``initdb`` first if needed).

        The first start moves to another port if this one is taken; later starts keep the
        port so that ``url`` stays valid.
        """
        if self._running:
            return
        first_start = not self._initialised
        if first_start:
            self._init_cluster()
        for attempt in range(_START_ATTEMPTS if first_start else 1):
            try:
                self._pg_ctl_start()
            except ServerUnavailableError:
                if not first_start or attempt == _START_ATTEMPTS - 1:
                    raise
                self.port = free_port()
            else:
                self._running = True
                return

    def _pg_ctl_stop(self, mode: Literal["fast", "immediate"]) -> None:
        if self._running:
            self._run(self.pg_ctl, "-D", str(self.data_dir), "-m", mode, "-w", "stop")
            self._running = False

    def stop(self) -> None:
        """Clean shutdown (``pg_ctl stop -m fast``)."""
        self._pg_ctl_stop("fast")

    def kill(self) -> None:
        """Crash-like shutdown (``pg_ctl stop -m immediate``): recovery runs on next start."""
        self._pg_ctl_stop("immediate")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database on this cluster and return its URL."""
        return create_database(self.url, name)
