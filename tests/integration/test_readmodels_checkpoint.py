"""Checkpoint read model, embedded and on PostgreSQL with Redis: verdicts at the exact time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from application.commands import Request
from application.mobility import HealthStatement
from application.population import CitizenDetails
from domain import mobility
from domain.areas import AreaCode
from domain.mobility import Transport, Trip
from domain.risk import RiskLevel
from infrastructure.bootstrap import Registry
from infrastructure.settings import Settings
from projections.engine import positions
from projections.models.projection import NAME, citizen_bucket, citizen_field
from projections.runtime import ProjectionRuntime
from projections.stores import RedisStore
from tests.support.registry import (
    ADMIN,
    HOA,
    LAN,
    LAN_AT_SITE,
    MINH,
    NURSE,
    OFFICER,
    MovableClock,
    build_registry,
    dose,
)

MICRO = timedelta(microseconds=1)


@pytest.fixture
def registry(backend_settings: Settings, clock: MovableClock) -> Iterator[Registry]:
    registry = build_registry(backend_settings, clock)
    for person in (LAN, MINH, HOA):
        registry.population.register_citizen(ADMIN, person)
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2030, 1, 1))
    yield registry
    registry.close()


def declare(
    registry: Registry,
    details: CitizenDetails,
    origin: str,
    test: mobility.TestResult | None = None,
) -> dict[str, Any]:
    trip = Trip(
        AreaCode.parse(origin),
        AreaCode.parse("001.001"),
        registry.clock().date(),
        Transport.CAR,
        checkpoint="HN-CP-07",
    )
    outcome = registry.mobility.declare_health(
        Request(OFFICER), details.person, trip, HealthStatement(test=test)
    )
    return outcome.result


def document(
    runtime: ProjectionRuntime, details: CitizenDetails, at: datetime
) -> dict[str, Any] | None:
    pseudonym = runtime.registry.ids.pseudonym(details.person)
    raw = runtime.sync_read_models.checkpoint_document(pseudonym, at)
    return None if raw is None else json.loads(raw)


def verdict(runtime: ProjectionRuntime, details: CitizenDetails, at: datetime) -> str:
    found = document(runtime, details, at)
    assert found is not None
    return str(found["verdict"])


def stored(runtime: ProjectionRuntime, details: CitizenDetails) -> bytes | None:
    pseudonym = runtime.registry.ids.pseudonym(details.person)
    return runtime.store.reader().hget(NAME, citizen_bucket(pseudonym), citizen_field(pseudonym))


def test_the_document_shows_the_masked_person_and_the_declaration(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    made = declare(registry, LAN, "048")
    runtime.catch_up()
    found = document(runtime, LAN, clock.now)
    assert found is not None
    assert found["name"] == "Nguyễn T. L."
    assert found["birth_year"] == 1990
    assert found["declaration"]["id"] == UUID(made["declaration_id"]).hex
    assert found["declaration"]["origin"] == "048"
    assert (found["verdict"], found["reasons"]) == ("pass", [])
    assert "079190123456" not in json.dumps(found)


def test_a_declaration_stops_counting_at_its_exact_end_with_no_new_event(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    made = declare(registry, LAN, "048")
    runtime.catch_up()
    until = datetime.fromisoformat(made["valid_until"])
    assert verdict(runtime, LAN, until - MICRO) == "pass"
    assert verdict(runtime, LAN, until) == "no_declaration"
    assert document(runtime, LAN, until)["declaration"] is None  # type: ignore[index]


def test_protection_starts_14_days_after_the_last_dose(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    nurse = Request(NURSE)
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.HIGH, clock.now, "cases")
    registry.immunization.record_dose(nurse, LAN_AT_SITE, dose("comirnaty", "PF1", clock.now))
    second = clock.advance(days=21)
    registry.immunization.record_dose(nurse, LAN_AT_SITE, dose("comirnaty", "PF1", second))
    clock.advance(days=12)
    declare(registry, LAN, "079.760")
    runtime.catch_up()
    protected = datetime.fromisoformat(
        document(runtime, LAN, clock.now)["vaccination"]["protected_from"]  # type: ignore[index]
    )
    midnight = datetime(protected.year, protected.month, protected.day, tzinfo=clock.now.tzinfo)
    midnight -= timedelta(hours=7)
    assert verdict(runtime, LAN, midnight - MICRO) == "quarantine"
    assert verdict(runtime, LAN, midnight) == "pass"
    assert document(runtime, LAN, midnight)["vaccination"]["status"] == "fully_vaccinated"  # type: ignore[index]


def test_a_negative_test_covers_72_hours(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.VERY_HIGH, clock.now, "cases")
    sampled = clock.now - timedelta(hours=10)
    declare(
        registry,
        LAN,
        "079",
        mobility.TestResult(mobility.TestKind.PCR, mobility.TestOutcome.NEGATIVE, sampled),
    )
    runtime.catch_up()
    assert verdict(runtime, LAN, clock.now) == "pass"
    assert verdict(runtime, LAN, sampled + timedelta(hours=72) - MICRO) == "pass"
    assert verdict(runtime, LAN, sampled + timedelta(hours=72)) == "quarantine"


def test_a_risk_level_flips_the_travellers_from_its_area_only_at_its_effective_time(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    declare(registry, LAN, "079.760")
    declare(registry, MINH, "079")
    declare(registry, HOA, "048")
    runtime.catch_up()
    untouched = stored(runtime, HOA)
    effective = clock.advance(minutes=5) + timedelta(hours=1)
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.HIGH, effective, "cases")
    runtime.catch_up()
    for traveller in (LAN, MINH):
        assert verdict(runtime, traveller, effective - MICRO) == "pass"
        assert verdict(runtime, traveller, effective) == "quarantine"
    assert verdict(runtime, HOA, effective) == "pass"
    assert stored(runtime, HOA) == untouched
    district = effective + timedelta(hours=1)
    registry.mobility.assess_risk(ADMIN, AreaCode("079", "760"), RiskLevel.LOW, district, "ok")
    runtime.catch_up()
    assert verdict(runtime, LAN, district) == "pass"
    assert verdict(runtime, MINH, district) == "quarantine"


def test_the_declaration_qr_token_finds_the_document(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    made = declare(registry, LAN, "048")
    runtime.catch_up()
    declaration_id = registry.qr_tokens.verify(made["qr_token"], clock.now)
    by_token = runtime.sync_read_models.checkpoint_by_declaration(declaration_id, clock.now)
    pseudonym = registry.ids.pseudonym(LAN.person)
    assert by_token == runtime.sync_read_models.checkpoint_document(pseudonym, clock.now)
    again = declare(registry, LAN, "048")
    runtime.catch_up()
    assert runtime.sync_read_models.checkpoint_by_declaration(declaration_id, clock.now) is None
    newer = UUID(again["declaration_id"])
    assert runtime.sync_read_models.checkpoint_by_declaration(newer, clock.now) is not None


def test_arrivals_list_travellers_from_high_risk_areas_while_valid(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    effective = clock.now + timedelta(hours=1)
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.HIGH, effective, "cases")
    made = declare(registry, LAN, "079.760")
    declare(registry, HOA, "048")
    runtime.catch_up()
    reads = runtime.sync_read_models
    assert reads.arrivals("001.001", clock.now) == []
    arriving = reads.arrivals("001", effective)
    assert [a["citizen"] for a in arriving] == [registry.ids.pseudonym(LAN.person)]
    assert arriving[0]["origin_risk_level"] == 3
    assert reads.arrivals("001.001", datetime.fromisoformat(made["valid_until"])) == []


def test_another_policy_rebuilds_the_verdicts_and_arrivals_it_decides(
    backend_settings: Settings,
    registry: Registry,
    runtime: ProjectionRuntime,
    clock: MovableClock,
) -> None:
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.MEDIUM, clock.now, "cases")
    declare(registry, LAN, "079.760")
    runtime.catch_up()
    assert verdict(runtime, LAN, clock.now) == "pass"
    assert runtime.sync_read_models.arrivals("001", clock.now) == []
    stricter = replace(
        backend_settings.checkpoint_policy,
        high_risk_levels=frozenset({RiskLevel.MEDIUM.value, 3, 4}),
    )
    reopened = build_registry(replace(backend_settings, checkpoint_policy=stricter), clock)
    under_stricter = ProjectionRuntime.from_registry(reopened)
    try:
        citizens = under_stricter.projections[0]
        assert citizens.version != runtime.projections[0].version
        assert positions(under_stricter.store, citizens) is None
        assert under_stricter.lag()[NAME]["population"].events == reopened.heads()["population"]
        under_stricter.catch_up()
        assert verdict(under_stricter, LAN, clock.now) == "quarantine"
        arriving = under_stricter.sync_read_models.arrivals("001", clock.now)
        assert [a["citizen"] for a in arriving] == [registry.ids.pseudonym(LAN.person)]
    finally:
        reopened.close()
        if isinstance(under_stricter.store, RedisStore):
            under_stricter.store.client.close()


def test_arrivals_from_areas_not_yet_at_risk_do_not_crowd_out_those_that_are(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    later = clock.now + timedelta(hours=1)
    registry.mobility.assess_risk(ADMIN, AreaCode("048"), RiskLevel.HIGH, later, "cases")
    registry.mobility.assess_risk(ADMIN, AreaCode("079"), RiskLevel.HIGH, clock.now, "cases")
    for traveller in (HOA, LAN):
        declare(registry, traveller, "048")
    clock.advance(minutes=1)
    declare(registry, MINH, "079")
    runtime.catch_up()
    minh = registry.ids.pseudonym(MINH.person)

    async def read_async() -> list[dict[str, Any]]:
        try:
            return await runtime.read_models.arrivals("001", clock.now, limit=1)
        finally:
            await runtime.read_models.aclose()

    now = [a["citizen"] for a in runtime.sync_read_models.arrivals("001", clock.now, limit=1)]
    assert now == [a["citizen"] for a in asyncio.run(read_async())] == [minh]
    assert len(runtime.sync_read_models.arrivals("001", later, limit=2)) == 2
