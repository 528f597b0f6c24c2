"""Statistics and eligibility read models, embedded and on PostgreSQL with Redis: doses per
day, province and product; coverage and dropout per province and age band; checkpoint
counts per day; the next dose, its earliest day, products and reasons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from application.commands import Request
from application.immunization import IdentityAtSite
from application.mobility import HealthStatement
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.doses import DoseKind, ScreeningOutcome
from domain.identity import NationalId, Sex
from domain.mobility import Transport, Trip, Verdict
from infrastructure.bootstrap import Registry
from infrastructure.settings import Settings
from projections.runtime import ProjectionRuntime
from tests.support.registry import (
    ADMIN,
    HOA,
    LAN,
    NURSE,
    OFFICER,
    MovableClock,
    build_registry,
    dose,
)

TUAN = CitizenDetails(
    NationalId("079060004321"), "Phạm Văn Tuấn", date(1960, 11, 20), Sex.MALE, AreaCode("079")
)
"""Of Lan's province, in the age band above hers (50-64)."""
NURSE_REQUEST = Request(NURSE)


@pytest.fixture
def registry(backend_settings: Settings, clock: MovableClock) -> Iterator[Registry]:
    registry = build_registry(backend_settings, clock)
    for person in (LAN, TUAN, HOA):
        registry.population.register_citizen(ADMIN, person)
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2030, 1, 1))
    registry.immunization.register_lot(ADMIN, "vaxzevria", "AZ1", date(2030, 1, 1))
    yield registry
    registry.close()


def vaccinate(
    registry: Registry, person: CitizenDetails, clock: MovableClock, product: str, lot: str
) -> None:
    identity = IdentityAtSite(person.person, person.full_name, person.date_of_birth)
    given = dose(product, lot, clock.now)
    registry.immunization.record_dose(NURSE_REQUEST, identity, given)


def test_doses_coverage_and_dropout_per_province_and_age_band(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    first_day = clock.now.date()
    for person in (LAN, TUAN):
        vaccinate(registry, person, clock, "comirnaty", "PF1")
    vaccinate(registry, HOA, clock, "vaxzevria", "AZ1")
    clock.advance(days=21)
    vaccinate(registry, LAN, clock, "comirnaty", "PF1")
    clock.advance(days=120)
    identity = IdentityAtSite(LAN.person, LAN.full_name, LAN.date_of_birth)
    booster = dose("comirnaty", "PF1", clock.now, DoseKind.BOOSTER)
    registry.immunization.record_dose(NURSE_REQUEST, identity, booster)
    runtime.catch_up()
    reads = runtime.sync_read_models

    second_day, booster_day = first_day + timedelta(days=21), clock.now.date()
    assert reads.doses(first_day, first_day + timedelta(days=91)) == {
        first_day.isoformat(): {"048": {"vaxzevria": 1}, "079": {"comirnaty": 2}},
        second_day.isoformat(): {"079": {"comirnaty": 1}},
    }
    assert reads.doses(booster_day - timedelta(days=91), booster_day) == {
        booster_day.isoformat(): {"079": {"comirnaty": 1}}
    }

    coverage = reads.coverage()
    assert coverage["079"]["18-49"] == {"first": 1, "complete": 1, "booster": 1, "dropout": 0.0}
    assert coverage["079"]["50-64"] == {"first": 1, "complete": 0, "booster": 0, "dropout": 1.0}
    assert coverage["048"]["18-49"] == {"first": 1, "complete": 0, "booster": 0, "dropout": 1.0}
    assert set(coverage) == {"079", "048"}


def test_declarations_and_verdicts_are_counted_per_checkpoint_and_day(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    officer = Request(OFFICER)
    trip = Trip(
        AreaCode("079"), AreaCode("001"), clock.now.date(), Transport.CAR, checkpoint="HN-CP-07"
    )
    for person in (LAN, TUAN):
        registry.mobility.declare_health(officer, person.person, trip, HealthStatement())
    registry.mobility.record_check(officer, LAN.person, Verdict.PASS, (), None)
    registry.mobility.record_check(officer, TUAN.person, Verdict.MEDICAL_CHECK, ("fever",), None)
    registry.mobility.record_check(officer, HOA.person, Verdict.NO_DECLARATION, (), None)
    clock.advance(days=1)
    registry.mobility.record_check(officer, LAN.person, Verdict.PASS, (), None)
    runtime.catch_up()

    day = clock.now.date() - timedelta(days=1)
    counts = runtime.sync_read_models.checkpoints(day, clock.now.date())
    assert counts == {
        day.isoformat(): {
            "HN-CP-07": {"declared": 2, "pass": 1, "medical_check": 1, "no_declaration": 1}
        },
        clock.now.date().isoformat(): {"HN-CP-07": {"pass": 1}},
    }


def eligibility(runtime: ProjectionRuntime, person: CitizenDetails, day: date) -> dict[str, Any]:
    pseudonym = runtime.registry.ids.pseudonym(person.person)
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    found = runtime.sync_read_models.eligibility(pseudonym, at)
    assert found is not None
    return found


def test_eligibility_names_the_next_dose_its_day_products_and_reasons(
    registry: Registry, runtime: ProjectionRuntime, clock: MovableClock
) -> None:
    today = clock.now.date()
    vaccinate(registry, HOA, clock, "vaxzevria", "AZ1")
    postponed = today + timedelta(days=5)
    registry.immunization.screen(NURSE_REQUEST, TUAN.person, ScreeningOutcome.POSTPONED, postponed)
    registry.immunization.screen(NURSE_REQUEST, LAN.person, ScreeningOutcome.CONTRAINDICATED)
    runtime.catch_up()

    second_due = today + timedelta(days=28)
    after_vaxzevria = {
        "next_dose": 2,
        "kind": "primary",
        "earliest": second_due.isoformat(),
        "products": ["comirnaty", "spikevax", "vaxzevria"],
        "reasons": [],
    }
    ahead = second_due - timedelta(days=1)
    assert eligibility(runtime, HOA, ahead) == {**after_vaxzevria, "eligible_now": False}
    assert eligibility(runtime, HOA, second_due) == {**after_vaxzevria, "eligible_now": True}
    waiting = eligibility(runtime, TUAN, postponed - timedelta(days=1))
    assert (waiting["next_dose"], waiting["earliest"]) == (1, postponed.isoformat())
    assert (waiting["reasons"], waiting["eligible_now"]) == (
        [f"postponed until {postponed}"],
        False,
    )
    assert eligibility(runtime, TUAN, postponed)["eligible_now"] is True
    assert eligibility(runtime, LAN, today) == {
        "next_dose": None,
        "kind": None,
        "earliest": None,
        "products": [],
        "reasons": ["contraindicated at the last screening"],
        "eligible_now": False,
    }
