"""`memory`: Redis bytes per citizen over every read model, from `MEMORY USAGE`.

The population goes in through the importer; every living adult gets a two-dose series
(saved in bulk through the domain, as in `rebuild`) and every living citizen one valid
health declaration, saved in bulk the same way, from one of four origins of which one is
at risk level 3 (so a quarter of them are arrivals). The read models are then built by the
real projections (a catch-up in this process) into a namespace of the run, and every key
of that namespace is measured with `MEMORY USAGE ... SAMPLES 0` (exact sizes, key names
and Redis overheads included). The figure is the namespace's bytes over the citizens,
beside the 500-byte goal, the citizens being the fields of the `c:` buckets; details
split it by key family (`c:` values, indexes, ...).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from application.commands import Request
from bench.harness import BenchContext, scenario
from bench.results import Result
from bench.scenarios import _fixtures as fx
from domain.areas import AreaCode
from domain.base import Actor
from domain.clock import local_day
from domain.identity import parse_person_id
from domain.mobility import Declaration, MobilityRecord, Transport, Trip
from domain.risk import RiskLevel

GOAL_BYTES = 500.0
OFFICER = Actor("bench-officer", "checkpoint_officer", checkpoint="HN-CP-07")
ORIGINS = ("079", "048.490", "001.001", "031")
HIGH_RISK_ORIGIN = ORIGINS[0]
VALIDITY = timedelta(days=3)


def declare_in_bulk(stack: fx.Stack, citizens: Sequence[fx.Citizen], *, batch: int = 500) -> int:
    """One declaration valid from now for each citizen, saved `batch` records per `save`;
    returns the events."""
    app = stack.registry.mobility
    now = datetime.now(UTC)
    events = 0
    for first in range(0, len(citizens), batch):
        records = []
        for i, citizen in enumerate(citizens[first : first + batch], start=first):
            person = parse_person_id(citizen.id_number)
            record = MobilityRecord(stack.registry.ids.mobility_record(person), person, OFFICER)
            origin = ORIGINS[i % len(ORIGINS)]
            trip = Trip(
                AreaCode.parse(origin),
                AreaCode.parse("001.002" if origin.startswith("001") else "001.001"),
                local_day(now),
                Transport.BUS,
                checkpoint=OFFICER.checkpoint,
            )
            declaration = Declaration(
                uuid.uuid4(), trip, (), False, False, None, now, now + VALIDITY
            )
            record.declare(declaration, OFFICER)
            events += len(record.pending_events)
            records.append(record)
        app.save(*records)
    return events


def family(key: bytes) -> str:
    """The read model a physical key belongs to (its logical key's first part), or
    "meta" for the projection's own keys."""
    name = key.decode(errors="replace")
    if "}:g" not in name:
        return "meta"
    logical = name.rsplit("}:g", 1)[1].partition(":")[2]
    return logical.partition(":")[0] or logical


@scenario("memory", "Redis bytes per citizen over every read model (MEMORY USAGE)")
def memory(ctx: BenchContext) -> Result:
    population = ctx.size(100_000, 5_000)
    client = ctx.redis()
    with fx.stack(ctx) as stack:
        entries = fx.register_entries(population, seed=29)
        fx.import_population(stack, entries)
        living = [
            fx.Citizen(e.id_number.value, e.full_name, e.date_of_birth)
            for e in entries
            if e.deceased_on is None
        ]
        vaccinated = fx.vaccinable(entries, datetime.now(UTC).date())
        doses = fx.vaccinate_in_bulk(stack, vaccinated)
        stack.registry.mobility.assess_risk(
            Request(fx.SETUP_ACTOR),
            AreaCode.parse(HIGH_RISK_ORIGIN),
            RiskLevel(3),
            datetime.now(UTC) - timedelta(days=1),
            "bench",
        )
        declarations = declare_in_bulk(stack, living)
        with fx.read_models(stack, projector=False) as models:
            models.runtime.catch_up()
            per_family: Counter[str] = Counter()
            keys: Counter[str] = Counter()
            citizens = 0
            for key in client.scan_iter(match=models.namespace + ":*", count=1000):
                size = client.memory_usage(key, samples=0) or 0
                per_family[family(key)] += size
                keys[family(key)] += 1
                if family(key) == "c":
                    citizens += int(client.hlen(key))
    total = sum(per_family.values())
    per_citizen = total / citizens if citizens else float("inf")
    return Result(
        "memory",
        per_citizen,
        "bytes/citizen",
        ceiling=GOAL_BYTES,
        ceiling_unit="bytes/citizen (goal)",
        goal=f"<= {GOAL_BYTES:g} bytes per citizen over every read model",
        met=None if ctx.quick else per_citizen <= GOAL_BYTES,
        details={
            "population": population,
            "citizen_values": citizens,
            "vaccinated": len(vaccinated),
            "immunization_events": doses,
            "mobility_events": declarations,
            "total_bytes": total,
            "bytes_per_citizen_by_family": {
                name: round(size / citizens, 1) for name, size in sorted(per_family.items())
            },
            "keys_by_family": dict(sorted(keys.items())),
        },
    )
