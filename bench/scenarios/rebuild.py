"""`rebuild`: replaying every read model from the events, at growing data sizes.

For each size a fresh store gets that many citizens through the population importer,
and every living adult a two-dose series saved in bulk through the domain (about three
immunization events each). The rebuild is the engine's `rebuild` of every projection
(what `vaxreg rebuild` runs) into fresh keys with the switch at the end. Its ceiling is
measured on the same store in the same run: reading every notification the projections
follow, a page of 2,000 at a time, and decoding each to a domain event with the
application's mapper, which is the least a rebuild must do.

Each rebuild reports its CPU time (this process's and its forked children's, which
replay a share of the events and derive part of what it holds on the second core,
beside the ceiling's: a steadier ratio on a busy machine) and its peak resident memory;
the largest size is also rebuilt with a citizen limit of an eighth of the register, so
what a rebuild over its limit costs in time and saves in memory shows.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.application import Application

from bench.harness import BenchContext, scenario
from bench.results import Result, ScalePoint
from bench.scenarios import _fixtures as fx

GOAL_EVENTS_PER_S = 50_000.0
GOAL_RATIO = 0.5
PAGE = 2_000


LIMITED_SHARE = 8
"""The second rebuild of the largest size holds at most this fraction of its citizens."""
MIB = 1024 * 1024

T = TypeVar("T")


def sizes(quick: bool) -> tuple[int, ...]:
    return (10_000,) if quick else (10_000, 100_000)


def _status_kib(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(found.group(1)) if found else 0


def resident() -> int:
    """Bytes of this process in memory now."""
    return _status_kib("VmRSS") * 1024


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended."""
    spent = os.times()
    return spent.user + spent.system + spent.children_user + spent.children_system


def measured(run: Callable[[], T]) -> tuple[T, float, int]:
    """`run()`, the CPU seconds of this process and of the children it waited for while
    it ran, and its peak resident bytes meanwhile (Linux: the high-water mark is reset
    before)."""
    Path("/proc/self/clear_refs").write_text("5")
    cpu = _cpu_seconds()
    result = run()
    return result, _cpu_seconds() - cpu, _status_kib("VmHWM") * 1024


def read_and_decode(apps: Iterable[Application[Any]]) -> tuple[int, float, float]:
    """Events read and decoded from `apps`, the seconds and the CPU seconds it took."""
    count = 0
    started, cpu = time.perf_counter(), time.process_time()
    for app in apps:
        start = 0
        while page := app.recorder.select_notifications(
            start, limit=PAGE, inclusive_of_start=False
        ):
            for notification in page:
                app.mapper.to_domain_event(notification)
            count += len(page)
            start = page[-1].id
    return count, time.perf_counter() - started, time.process_time() - cpu


def rebuilt_within(models: fx.ReadModelSet, limit: int | None, base: int) -> dict[str, Any]:
    """Rebuilds every projection, each holding at most `limit` entities (None: its own
    limit): its rate, seconds, CPU seconds and peak memory, also above `base` bytes."""
    kept = [p.hold_limit for p in models.runtime.projections]
    if limit is not None:
        for projection in models.runtime.projections:
            projection.hold_limit = limit
    try:
        (events, seconds), cpu, peak = measured(models.rebuild_all)
    finally:
        for projection, hold_limit in zip(models.runtime.projections, kept, strict=True):
            projection.hold_limit = hold_limit
    return {
        "rate": events / seconds,
        "events": events,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "peak_rss_mib": round(peak / MIB, 1),
        "peak_rss_above_start_mib": round((peak - base) / MIB, 1),
        "hold_limit": kept[0] if limit is None else limit,
    }


def one_size(ctx: BenchContext, citizens: int, limited: bool) -> Result:
    with fx.stack(ctx) as stack:
        entries = fx.register_entries(citizens, seed=17)
        summary = fx.import_population(stack, entries)
        vaccinated = fx.vaccinable(entries, date.today())
        immunization_events = fx.vaccinate_in_bulk(stack, vaccinated)
        with fx.read_models(stack, projector=False) as models:
            apps = [stack.registry.apps[c] for c in models.contexts()]
            decoded, decode_s, decode_cpu = ctx.median_of(
                lambda: read_and_decode(apps), lambda r: r[0] / r[1]
            )[0]
            # The smaller peak first: memory a run frees is kept by the process.
            base = resident()
            over = None
            if limited:
                over = rebuilt_within(models, max(citizens // LIMITED_SHARE, 1), base)
            within = rebuilt_within(models, None, base)
    rate, rebuilt, rebuild_s = within["rate"], within["events"], within["seconds"]
    ceiling = decoded / decode_s
    cpu_ceiling = decoded / decode_cpu
    for run in (within, over):
        if run is not None:
            run["ratio"] = round(run["rate"] / ceiling, 3)
            run["cpu_ratio"] = round(run["events"] / run["cpu_seconds"] / cpu_ceiling, 3)
    return Result(
        "rebuild",
        rate,
        "events/s",
        ceiling=ceiling,
        ceiling_unit="events/s (read and decode, same store)",
        goal=f">= {GOAL_EVENTS_PER_S:,.0f} events/s and >= {GOAL_RATIO} of the decode rate",
        met=None if ctx.quick else rate >= GOAL_EVENTS_PER_S and rate >= GOAL_RATIO * ceiling,
        details={
            "size": citizens,
            "seconds": round(rebuild_s, 3),
            "events": rebuilt,
            "population_events": summary["events"],
            "immunization_events": immunization_events,
            "decode_seconds": round(decode_s, 3),
            "decode_cpu_seconds": round(decode_cpu, 3),
            "start_rss_mib": round(base / MIB, 1),
            "within_the_limit": within,
            "over_the_limit": over,
        },
    )


@scenario("rebuild", "Read-model rebuild beside the read-and-decode rate of the same store")
def rebuild(ctx: BenchContext) -> Result:
    library = ctx.ceiling("decode_rate")
    results: list[Result] = []
    chosen = sizes(ctx.quick)
    for n in chosen:
        if results:
            ctx.record(results[-1])
        results.append(one_size(ctx, n, limited=n == chosen[-1]))
    scaling: list[ScalePoint] = [
        {"size": r.details["size"], "seconds": r.details["seconds"], "rate": r.value}
        for r in results
    ]
    largest = results[-1]
    largest.details["scaling"] = scaling
    largest.details["library_decode_rate"] = library.value
    return largest
