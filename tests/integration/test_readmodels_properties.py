"""Properties of the read models over random histories made through the application.

On SQLite with in-process stores and on PostgreSQL with Redis, incrementally built read
models equal a rebuild from scratch, key by key (counters at 0 count as absent: an
incremental build may move a count away from a key a rebuild never touches), whether the
rebuild holds everything in memory or writes out what it holds after every page, and
whether a forked child derives half of it or not; redelivered events change nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.commands import Request
from application.immunization import IdentityAtSite
from application.mobility import HealthStatement
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.doses import DoseKind, ScreeningOutcome
from domain.errors import DomainError
from domain.identity import NationalId, Sex
from domain.mobility import Symptom, Transport, Trip
from domain.risk import RiskLevel
from infrastructure.bootstrap import Registry
from infrastructure.settings import Settings
from projections.engine import DecodedBatch, Outcome, apply_batch, load_state, rebuild
from projections.models.projection import NAME, CitizenProjection
from projections.runtime import ProjectionRuntime
from projections.stores import MemoryStore, ReadModelStore, RedisStore
from reliability.servers import (
    create_database,
    delete_prefixed_keys,
    drop_database,
    postgres_server_url,
    redis_server_url,
    unique_name,
)
from tests.support.registry import (
    ADMIN,
    HOA,
    MINH,
    NURSE,
    OFFICER,
    MovableClock,
    build_registry,
    dose,
    registry_settings,
)
from tests.support.snapshots import normalised

PEOPLE = [
    CitizenDetails(
        NationalId("079190123456"),
        "Nguyễn Thị Lan",
        date(1990, 5, 1),
        Sex.FEMALE,
        AreaCode.parse("079.760"),
    ),
    MINH,
    HOA,
]
AREAS = ["079", "079.760", "001", "048"]
NURSE_REQUEST = Request(NURSE)


def at_site(person: CitizenDetails) -> IdentityAtSite:
    return IdentityAtSite(person.person, person.full_name, person.date_of_birth)


def run(registry: Registry, clock: MovableClock, step: tuple[Any, ...]) -> None:
    kind, who, n = step
    person = PEOPLE[who]
    if kind == "advance":
        clock.advance(hours=n * 7)
    elif kind == "declare":
        trip = Trip(
            AreaCode.parse(AREAS[n]),
            AreaCode.parse(AREAS[(n + 1) % 4]),
            clock.now.date(),
            Transport.BUS,
            checkpoint=f"CP-{n % 2}",
        )
        health = HealthStatement(symptoms=(Symptom.FEVER,) if n == 3 else ())
        registry.mobility.declare_health(Request(OFFICER), person.person, trip, health)
    elif kind == "risk":
        level = RiskLevel(n % 4 + 1)
        effective = clock.now + timedelta(hours=n * 5)
        registry.mobility.assess_risk(ADMIN, AreaCode.parse(AREAS[n]), level, effective, "r")
    elif kind == "register":
        registry.immunization.register_for_vaccination(NURSE_REQUEST, at_site(person), None)
    elif kind == "screen":
        registry.immunization.screen(NURSE_REQUEST, person.person, ScreeningOutcome.ELIGIBLE)
    elif kind == "dose":
        given = clock.now - timedelta(days=n)
        booster = DoseKind.BOOSTER if n == 3 else DoseKind.PRIMARY
        registry.immunization.record_dose(
            NURSE_REQUEST, at_site(person), dose("comirnaty", "PF1", given, booster, "test")
        )
    elif kind in ("correct", "void"):
        record = registry.immunization.vaccination_record(person.person)
        if record is None or not record.valid_doses:
            return
        target: UUID = record.valid_doses[n % len(record.valid_doses)].dose_id
        if kind == "void":
            registry.immunization.void_dose(NURSE_REQUEST, person.person, target, "wrong person")
        else:
            fixed = dose("spikevax", "MD1", clock.now - timedelta(days=n + 1), override_reason="x")
            registry.immunization.correct_dose(NURSE_REQUEST, person.person, target, "typo", fixed)
    elif kind == "move":
        registry.population.change_residence(ADMIN, person.person, AreaCode.parse(AREAS[n]))


STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "advance",
                "declare",
                "risk",
                "register",
                "screen",
                "dose",
                "dose",
                "correct",
                "void",
                "move",
            ]
        ),
        st.integers(0, 2),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=14,
)


@contextlib.contextmanager
def backend(kind: str, tmp: Path) -> Iterator[tuple[Settings, Callable[[], ReadModelStore]]]:
    """Registry settings and a maker of empty read-model stores: SQLite and in-process
    stores, or a fresh database and key prefix on the test servers, removed afterwards."""
    if kind == "embedded":
        yield registry_settings(tmp), MemoryStore
        return
    server, database = postgres_server_url(), unique_name("vaxreg_test_")
    prefix = f"{unique_name('vaxregtest:')}:"
    client = redis.Redis.from_url(redis_server_url())
    stores = (RedisStore(client, f"{prefix}{n}") for n in itertools.count())
    try:
        url = create_database(server, database)
        yield registry_settings(tmp, url), lambda: next(stores)
    finally:
        client.close()
        drop_database(server, database)
        delete_prefixed_keys(redis_server_url(), prefix)


def redeliver_everything(runtime: ProjectionRuntime) -> list[Outcome]:
    """Each context's events from the first, as one batch each: those at or below the
    stored position must be skipped one by one, the rest applied."""
    projection = runtime.projections[0]
    state = load_state(runtime.store, projection)
    assert state is not None
    outcomes = []
    for context, app in runtime.registry.apps.items():
        notifications = app.recorder.select_notifications(start=1, limit=10_000)
        batch = DecodedBatch(app.mapper, notifications)
        outcomes.append(apply_batch(runtime.store, projection, state, context, 0, batch))
    return outcomes


@pytest.mark.parametrize(
    "kind", ["embedded", pytest.param("servers", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=STEPS, unread=st.integers(0, 4))
def test_incremental_read_models_equal_a_rebuild_and_ignore_redelivery(
    kind: str, steps: list[tuple[Any, ...]], unread: int
) -> None:
    """The last `unread` steps reach the read models only in a redelivery of everything."""
    with tempfile.TemporaryDirectory() as tmp, backend(kind, Path(tmp)) as (options, new_store):
        clock = MovableClock()
        registry = build_registry(options, clock)
        try:
            for person in PEOPLE:
                registry.population.register_citizen(ADMIN, person)
            for product, lot in (("comirnaty", "PF1"), ("spikevax", "MD1")):
                registry.immunization.register_lot(ADMIN, product, lot, date(2030, 1, 1))
            live = ProjectionRuntime(registry, new_store())
            live.catch_up()
            for done, step in enumerate(steps, start=1):
                with contextlib.suppress(DomainError):
                    run(registry, clock, step)
                if done <= len(steps) - unread:
                    live.catch_up()
            redeliver_everything(live)
            incremental = live.store.snapshot(NAME)
            fresh = ProjectionRuntime(registry, new_store())
            fresh.catch_up()
            assert normalised(incremental) == normalised(fresh.store.snapshot(NAME))
            assert any(key.startswith("p0:c:") for key in incremental)
            written_out = ProjectionRuntime(registry, new_store())
            written_out.projections[0].hold_limit = 0
            rebuild(written_out.store, written_out.projections[0], registry.apps, page_size=3)
            assert normalised(written_out.store.snapshot(NAME)) == normalised(incremental)
            forked = ProjectionRuntime(registry, new_store())
            citizens = forked.projections[0]
            assert isinstance(citizens, CitizenProjection)
            citizens.fork_from = 1
            rebuild(forked.store, citizens, registry.apps)
            assert normalised(forked.store.snapshot(NAME)) == normalised(incremental)

            assert set(redeliver_everything(live)) == {Outcome.NOTHING_NEW}
            assert live.store.snapshot(NAME) == incremental
        finally:
            registry.close()
