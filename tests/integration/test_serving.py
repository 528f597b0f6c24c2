"""`api.serving`: worker processes with a listening socket each, supervised."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.serving import STARTUP_GRACE_S
from bench.servers import free_port, http_status

APP = """
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def pids_of(self, connections: int) -> list[int]:
        """The worker pid answering each of `connections` keep-alive connections, all
        opened before any is used (as a client pool opens them)."""
        opened = [http.client.HTTPConnection("127.0.0.1", self.port) for _ in range(connections)]
        for connection in opened:
            connection.connect()
        pids = []
        for connection in opened:
            connection.request("GET", "/")
            pids.append(int(connection.getresponse().read()))
            connection.close()
        return pids

    def answering_pids(self, connections: int) -> set[int]:
        """`pids_of`, or none while connections are refused or reset (a worker dying)."""
        try:
            return set(self.pids_of(connections))
        except OSError:
            return set()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "pid_app.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"}
    command = [sys.executable, "-m", "api.serving", "pid_app:app", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_answering(port)
        yield Served(process, port)
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_until_answering(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while http_status("127.0.0.1", port, "/") is None:
        assert time.monotonic() < deadline, "the server did not answer"
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry))
    return found


def test_a_burst_of_connections_is_spread_over_both_workers(served: Served) -> None:
    time.sleep(1)  # both workers listening
    assert len(set(served.pids_of(24))) == 2


def test_a_worker_that_dies_is_replaced(served: Served) -> None:
    time.sleep(STARTUP_GRACE_S)  # a worker dying sooner stops the server instead
    killed, survivor = set(served.pids_of(24))
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not served.answering_pids(24) - {killed, survivor}:
        assert time.monotonic() < deadline, "no new worker answered"
        time.sleep(0.2)


def test_sigterm_stops_the_workers_and_the_supervisor(served: Served) -> None:
    workers = _children(served.process.pid) & set(served.pids_of(8))
    assert workers
    served.process.terminate()
    assert served.process.wait(timeout=20) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_workers_that_cannot_start_stop_the_server_with_an_error() -> None:
    command = [sys.executable, "-m", "api.serving", "no_such_module:app", "--workers", "2"]
    finished = subprocess.run(
        [*command, "--port", str(free_port())], capture_output=True, timeout=60
    )
    assert finished.returncode != 0
