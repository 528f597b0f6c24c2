"""Soak: a mixed load for minutes, watching for 5xx, growing memory and latency.

The API (two workers) runs against a throwaway PostgreSQL and Redis, as in the fault
run but with no faults. Clients mostly look travellers up at a checkpoint, sometimes
read histories and record doses and declarations. The resident memory of the uvicorn
master, each of its child processes and the projector is sampled throughout, and the
projection lag from ``/metrics``; memory is called flat when the median of the last
third of the samples is within 10% (or 20 MB) of the median of the first third after the
first minute, and lag is bounded when it never exceeds `MAX_LAG_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from reliability.faults import (
    CLIENT_TIMEOUT_SECONDS,
    Resolution,
    Workload,
    count_store,
    resolve,
    running_stack,
    seed,
)

SAMPLE_SECONDS = 10.0
WARMUP_SECONDS = 60.0
FLAT_RATIO = 0.10
FLAT_BYTES = 20 * 1024 * 1024
MAX_LAG_SECONDS = 5.0
LAG_METRIC = "vaxreg_projection_lag_seconds"


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


@dataclass
class Samples:
    by_process: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    lag: list[tuple[float, float]] = field(default_factory=list)

    def take(self, at: float, processes: dict[str, int]) -> None:
        for name, pid in processes.items():
            rss = rss_bytes(pid)
            if rss is not None:
                self.by_process.setdefault(name, []).append((at, rss))

    def flat(self, name: str) -> tuple[bool, float, float]:
        """Whether memory stayed flat, with the early and late medians in MB."""
        values = [rss for at, rss in self.by_process[name] if at >= WARMUP_SECONDS]
        if len(values) < 3:
            values = [rss for _, rss in self.by_process[name]]
        third = max(1, len(values) // 3)
        early, late = statistics.median(values[:third]), statistics.median(values[-third:])
        grown = late - early
        return grown <= max(FLAT_RATIO * early, FLAT_BYTES), early / 2**20, late / 2**20


def lag_of(metrics: str) -> float:
    """The largest projection lag in a ``/metrics`` text."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(LAG_METRIC)
    ]
    return max(values, default=0.0)


async def _sample(
    client: httpx.AsyncClient,
    processes: Callable[[], dict[str, int]],
    samples: Samples,
    started: float,
    deadline: float,
) -> None:
    while time.monotonic() < deadline:
        at = time.monotonic() - started
        samples.take(at, processes())
        with contextlib.suppress(httpx.HTTPError):
            samples.lag.append((at, lag_of((await client.get("/metrics")).text)))
        await asyncio.sleep(SAMPLE_SECONDS)


async def _load(
    url: str,
    workload: Workload,
    clients: int,
    seconds: float,
    samples: Samples,
    processes: Callable[[], dict[str, int]],
) -> list[Resolution]:
    started = time.monotonic()
    deadline = started + seconds
    resolutions: list[Resolution] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as client:

        async def one_client(number: int) -> None:
            rng = random.Random(number)
            while time.monotonic() < deadline:
                command = workload.next(rng)
                resolutions.append(await resolve(client, command, deadline + 30, started))

        sampler = asyncio.create_task(_sample(client, processes, samples, started, deadline))
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        await sampler
    return resolutions


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class SoakReport:
    minutes: float
    lines: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK: no 5xx, memory flat" if self.ok else "FAILED"
        return "\n".join([*self.lines, verdict, *(f"  - {p}" for p in self.problems)])


def summarize(
    minutes: float, clients: int, resolutions: list[Resolution], samples: Samples, logged: int
) -> SoakReport:
    attempts = [(r.command.kind, a) for r in resolutions for a in r.attempts]
    statuses = Counter(str(a.status) for _, a in attempts)
    errors = sum(n for s, n in statuses.items() if not s.isdigit() or int(s) >= 500)
    lines = [
        f"soak: {minutes:g} min, {clients} clients, {len(attempts)} requests "
        f"({len(attempts) / (minutes * 60):.0f}/s)",
        f"statuses: {dict(sorted(statuses.items()))}",
    ]
    for kind in sorted({k for k, _ in attempts}):
        latencies = [a.latency for k, a in attempts if k == kind and isinstance(a.status, int)]
        p50, p99 = (_percentile(latencies, q) * 1000 for q in (0.5, 0.99))
        lines.append(
            f"  {kind:<12} {len(latencies):>7} answered, p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
            f" max {max(latencies, default=0):.2f} s"
        )
    problems: list[str] = []
    if errors:
        problems.append(f"{errors} requests failed with 5xx, a timeout or a refused connection")
    for name in sorted(samples.by_process):
        flat, early, late = samples.flat(name)
        peak = max(rss for _, rss in samples.by_process[name]) / 2**20
        lines.append(
            f"  rss {name:<13} {early:7.1f} MB early, {late:7.1f} MB late, peak {peak:7.1f} MB"
            f" ({'flat' if flat else 'GROWING'})"
        )
        if not flat:
            problems.append(f"{name} memory grew from {early:.0f} MB to {late:.0f} MB")
    histories = sum(1 for r in resolutions if r.command.kind == "history" and r.acknowledged)
    lines.append(f"history reads answered {histories}, in the access log {logged}")
    lags = [lag for _, lag in samples.lag]
    worst = max(lags, default=0.0)
    lines.append(
        f"projection lag: {len(lags)} samples, median {statistics.median(lags or [0.0]):.2f} s,"
        f" max {worst:.2f} s"
    )
    if worst > MAX_LAG_SECONDS:
        problems.append(f"projection lag reached {worst:.1f} s (bound {MAX_LAG_SECONDS} s)")
    not_found = statuses["404"]
    if not_found:
        problems.append(f"{not_found} lookups of registered citizens answered 404")
    if logged < histories:
        problems.append("answered history reads missing from the access log")
    return SoakReport(minutes, lines, problems)


def run_soak(
    directory: Path,
    *,
    minutes: float = 10.0,
    clients: int = 8,
    citizens: int = 2000,
    reads: float = 0.05,
    lookups: float = 0.8,
    out: Callable[[str], None] = print,
) -> SoakReport:
    with running_stack(directory) as stack:
        assert stack.api is not None
        people = seed(stack, citizens)
        out(f"seeded {len(people)} citizens; soaking {minutes:g} min with {clients} clients")
        workload = Workload(stack, people, reads=reads, lookups=lookups)
        samples = Samples()
        pid = stack.api.process.pid

        def processes() -> dict[str, int]:
            found = {"api master": pid}
            found |= {f"api child {n}": c for n, c in enumerate(sorted(children(pid)), 1)}
            if stack.projector is not None:
                found["projector"] = stack.projector.pid
            return found

        resolutions = asyncio.run(
            _load(stack.api.url, workload, clients, minutes * 60, samples, processes)
        )
        found = count_store(stack)
    report = summarize(minutes, clients, resolutions, samples, found.history_reads_logged)
    out(report.summary())
    return report
