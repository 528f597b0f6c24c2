"""Soak: a mixed load for minutes, watching for 5xx, growing memory and latency.

The API (two workers) runs against a throwaway PostgreSQL and Redis, as in the fault
run but with no faults. Clients mostly read (citizens' histories as auditors) and
sometimes record doses and declarations. The resident memory of the uvicorn master and
of each of its child processes is sampled throughout; memory is called flat when the
median of the last third of the samples is within 10% (or 20 MB) of the median of the
first third after the first minute.
"""

from __future__ import annotations

import asyncio
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


async def _sample(pid: int, samples: Samples, started: float, deadline: float) -> None:
    while time.monotonic() < deadline:
        processes = {"api master": pid}
        processes |= {f"api child {n}": c for n, c in enumerate(sorted(children(pid)), 1)}
        samples.take(time.monotonic() - started, processes)
        await asyncio.sleep(SAMPLE_SECONDS)


async def _load(
    url: str, workload: Workload, clients: int, seconds: float, samples: Samples, pid: int
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

        sampler = asyncio.create_task(_sample(pid, samples, started, deadline))
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
    lines.append("projection lag: no projector in this tree yet, not measured")
    if logged < histories:
        problems.append("answered history reads missing from the access log")
    return SoakReport(minutes, lines, problems)


def run_soak(
    directory: Path,
    *,
    minutes: float = 10.0,
    clients: int = 8,
    citizens: int = 2000,
    reads: float = 0.8,
    out: Callable[[str], None] = print,
) -> SoakReport:
    with running_stack(directory) as stack:
        assert stack.api is not None
        people = seed(stack, citizens)
        out(f"seeded {len(people)} citizens; soaking {minutes:g} min with {clients} clients")
        workload = Workload(stack, people, reads=reads)
        samples = Samples()
        resolutions = asyncio.run(
            _load(stack.api.url, workload, clients, minutes * 60, samples, stack.api.process.pid)
        )
        found = count_store(stack)
    report = summarize(minutes, clients, resolutions, samples, found.history_reads_logged)
    out(report.summary())
    return report
