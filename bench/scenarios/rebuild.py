"""`rebuild`: replaying every read model from the events, at growing data sizes.

For each size a fresh store gets that many citizens through the population importer,
and every living adult a two-dose series saved in bulk through the domain (about three
immunization events each). The rebuild is the engine's `rebuild` of every projection
(what `vaxreg rebuild` runs) into fresh keys with the switch at the end. Its ceiling is
measured on the same store in the same run: reading every notification the projections
follow, a page of 2,000 at a time, and decoding each to a domain event with the
application's mapper, which is the least a rebuild must do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date
from typing import Any

from eventsourcing.application import Application

from bench.harness import BenchContext, scenario
from bench.results import Result, ScalePoint
from bench.scenarios import _fixtures as fx

GOAL_EVENTS_PER_S = 50_000.0
GOAL_RATIO = 0.5
PAGE = 2_000


def sizes(quick: bool) -> tuple[int, ...]:
    return (10_000,) if quick else (10_000, 100_000)


def read_and_decode(apps: Iterable[Application[Any]]) -> tuple[int, float]:
    """Events read and decoded from `apps`, and the seconds it took."""
    count = 0
    started = time.perf_counter()
    for app in apps:
        start = 0
        while page := app.recorder.select_notifications(
            start, limit=PAGE, inclusive_of_start=False
        ):
            for notification in page:
                app.mapper.to_domain_event(notification)
            count += len(page)
            start = page[-1].id
    return count, time.perf_counter() - started


def one_size(ctx: BenchContext, citizens: int) -> Result:
    with fx.stack(ctx) as stack:
        entries = fx.register_entries(citizens, seed=17)
        summary = fx.import_population(stack, entries)
        vaccinated = fx.vaccinable(entries, date.today())
        immunization_events = fx.vaccinate_in_bulk(stack, vaccinated)
        with fx.read_models(stack, projector=False) as models:
            apps = [stack.registry.apps[c] for c in models.contexts()]
            decoded, decode_s = ctx.median_of(lambda: read_and_decode(apps), lambda r: r[0] / r[1])[
                0
            ]
            rebuilt, rebuild_s = models.rebuild_all()
    rate = rebuilt / rebuild_s
    ceiling = decoded / decode_s
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
        },
    )


@scenario("rebuild", "Read-model rebuild beside the read-and-decode rate of the same store")
def rebuild(ctx: BenchContext) -> Result:
    library = ctx.ceiling("decode_rate")
    results: list[Result] = []
    for n in sizes(ctx.quick):
        if results:
            ctx.record(results[-1])
        results.append(one_size(ctx, n))
    scaling: list[ScalePoint] = [
        {"size": r.details["size"], "seconds": r.details["seconds"], "rate": r.value}
        for r in results
    ]
    largest = results[-1]
    largest.details["scaling"] = scaling
    largest.details["library_decode_rate"] = library.value
    return largest
