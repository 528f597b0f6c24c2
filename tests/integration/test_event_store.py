"""The event-sourced core on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.commands import CommandReceipt, Request
from application.immunization import IdentityAtSite
from domain.doses import ScreeningOutcome
from domain.errors import (
    AlreadyRegistered,
    IdempotencyKeyReused,
    IdentityMismatch,
    IntervalTooShort,
    InvalidIdNumber,
)
from domain.identity import NationalId
from domain.status import Status
from infrastructure.bootstrap import Registry
from tests.support.registry import (
    ADMIN,
    LAN,
    LAN_AT_SITE,
    NURSE,
    MovableClock,
    build_registry,
    dose,
    registry_settings,
)

ENCRYPTION_KEY = "Ht3e6EWtKu+0wLlsRPdW+6i01yWpv6CpU64HUy3kCbI="


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def registry(tmp_path: Path, backend_url: str | None, clock: MovableClock) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path, backend_url), clock)
    registry.immunization.register_lot(ADMIN, "vaxzevria", "AZ1", date(2022, 6, 1))
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2022, 6, 1))
    yield registry
    registry.close()


def test_two_doses_make_a_citizen_fully_vaccinated_after_14_days(
    registry: Registry, clock: MovableClock
) -> None:
    registry.population.register_citizen(ADMIN, LAN)
    staff = Request(NURSE)
    first = registry.immunization.record_dose(
        staff, LAN_AT_SITE, dose("vaxzevria", "AZ1", clock.now)
    )
    clock.advance(days=28)
    second = registry.immunization.record_dose(
        staff, LAN_AT_SITE, dose("comirnaty", "PF1", clock.now)
    )

    assert first.position.startswith("immunization:")
    assert second.result["dose_number"] == 2
    assert registry.immunization.status(LAN.person).status is Status.PARTIALLY_VACCINATED
    clock.advance(days=14)
    assert registry.immunization.status(LAN.person).status is Status.FULLY_VACCINATED


def test_refused_commands_change_nothing(registry: Registry, clock: MovableClock) -> None:
    registry.population.register_citizen(ADMIN, LAN)
    staff = Request(NURSE)
    registry.immunization.record_dose(staff, LAN_AT_SITE, dose("vaxzevria", "AZ1", clock.now))
    first_day = clock.now.date()
    before = registry.heads()

    with pytest.raises(InvalidIdNumber):
        NationalId.parse("07919012345")
    with pytest.raises(InvalidIdNumber, match="digits 1-3"):
        NationalId.parse("003190123456")
    clock.advance(days=10)
    with pytest.raises(IntervalTooShort) as too_soon:
        registry.immunization.record_dose(staff, LAN_AT_SITE, dose("vaxzevria", "AZ1", clock.now))
    assert too_soon.value.details["earliest_date"] == str(
        date.fromordinal(first_day.toordinal() + 28)
    )
    wrong_name = IdentityAtSite(LAN.person, "Trần Văn Nam", LAN.date_of_birth)
    with pytest.raises(IdentityMismatch):
        registry.immunization.record_dose(staff, wrong_name, dose("comirnaty", "PF1", clock.now))
    with pytest.raises(AlreadyRegistered):
        registry.population.register_citizen(ADMIN, LAN)

    assert registry.heads() == before
    assert registry.immunization.status(LAN.person).doses == 1


def test_a_retried_request_returns_the_first_result_and_records_once(
    registry: Registry, clock: MovableClock
) -> None:
    registry.population.register_citizen(ADMIN, LAN)
    retry = Request(NURSE, request_id="site-42/visit-7")
    given = dose("vaxzevria", "AZ1", clock.now)
    first = registry.immunization.record_dose(retry, LAN_AT_SITE, given)
    head = registry.immunization.head()
    again = registry.immunization.record_dose(retry, LAN_AT_SITE, given)

    assert again.replayed
    assert again.result == first.result
    assert registry.immunization.head() == head
    with pytest.raises(IdempotencyKeyReused):
        registry.immunization.record_dose(retry, LAN_AT_SITE, dose("comirnaty", "PF1", clock.now))


def test_a_copy_of_a_request_that_already_committed_answers_its_result(
    registry: Registry, clock: MovableClock
) -> None:
    """The copy loads the record the first changed: its rules refuse the dose it brings,
    and only then does it look for the receipt and answer the first result."""
    registry.population.register_citizen(ADMIN, LAN)
    retry = Request(NURSE, request_id="site-42/visit-9")
    given = dose("vaxzevria", "AZ1", clock.now)
    first = registry.immunization.record_dose(retry, LAN_AT_SITE, given)
    head = registry.immunization.head()
    original_find = registry.immunization.find
    receipt_lookups: list[object] = []

    def counting_receipt_lookups(aggregate_id: Any, kind: Any) -> Any:
        if kind is CommandReceipt:
            receipt_lookups.append(aggregate_id)
        return original_find(aggregate_id, kind)

    registry.immunization.find = counting_receipt_lookups  # type: ignore[method-assign]
    late_copy = registry.immunization.record_dose(retry, LAN_AT_SITE, given)

    assert len(receipt_lookups) == 1
    assert late_copy.replayed
    assert late_copy.result == first.result
    assert registry.immunization.head() == head


def test_two_writers_racing_on_one_citizen_both_land_after_one_retry(
    tmp_path: Path, backend_url: str | None, registry: Registry, clock: MovableClock
) -> None:
    """Writer A loads the record, writer B (another process's registry) commits first."""
    registry.population.register_citizen(ADMIN, LAN)
    registry.immunization.record_dose(
        Request(NURSE), LAN_AT_SITE, dose("vaxzevria", "AZ1", clock.now)
    )
    other = build_registry(registry_settings(tmp_path, backend_url), clock)
    clock.advance(days=30)
    saves: list[int] = []
    original_save = registry.immunization.save
    interfered = threading.Event()

    def save_after_the_other_writer(*aggregates: Any, **kwargs: Any) -> Any:
        saves.append(len(aggregates))
        if not interfered.is_set():
            interfered.set()
            other.immunization.screen(Request(NURSE), LAN.person, ScreeningOutcome.ELIGIBLE)
        return original_save(*aggregates, **kwargs)

    registry.immunization.save = save_after_the_other_writer  # type: ignore[method-assign]
    try:
        registry.immunization.record_dose(
            Request(NURSE), LAN_AT_SITE, dose("comirnaty", "PF1", clock.now)
        )
    finally:
        other.close()

    record = registry.immunization.vaccination_record(LAN.person)
    assert record is not None
    assert len(saves) == 2
    assert [d.product for d in record.valid_doses] == ["vaxzevria", "comirnaty"]
    assert len(record.screenings) == 1


def test_history_spans_the_contexts_and_shows_past_states(
    registry: Registry, clock: MovableClock
) -> None:
    registry.population.register_citizen(ADMIN, LAN)
    registry.immunization.record_dose(
        Request(NURSE), LAN_AT_SITE, dose("vaxzevria", "AZ1", clock.now)
    )
    after_first = clock.now
    clock.advance(days=28)
    registry.immunization.record_dose(
        Request(NURSE), LAN_AT_SITE, dose("comirnaty", "PF1", clock.now)
    )
    clock.advance(days=1)
    registry.population.correct_record(
        ADMIN, LAN.person, "typo at registration", full_name="Nguyễn Thị Lan Anh"
    )

    history = registry.audit.history(LAN.person)
    types = [e.event_type for e in history.entries]
    assert types == [
        "Citizen.Registered",
        "VaccinationRecord.Opened",
        "VaccinationRecord.DoseAdministered",
        "VaccinationRecord.DoseAdministered",
        "Citizen.RecordCorrected",
    ]
    assert history.entries[2].actor == {
        "user_id": "nurse-1",
        "role": "medical_staff",
        "unit": "79-HCM-001",
        "checkpoint": None,
    }
    assert history.entries[2].occurred_at == after_first.isoformat()
    assert history.state["citizen"]["full_name"] == "Nguyễn Thị Lan Anh"

    past = registry.audit.history(LAN.person, as_of=after_first)
    assert len(past.entries) == 3
    assert past.state["citizen"]["full_name"] == "Nguyễn Thị Lan"
    assert past.state["vaccination"]["status"]["doses"] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_encryption_at_rest_leaves_only_ciphertext_in_the_table(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = registry_settings(tmp_path, url, VAXREG_ENCRYPTION_KEY=ENCRYPTION_KEY)
    registry = build_registry(settings, MovableClock())
    try:
        registry.population.register_citizen(ADMIN, LAN)
        assert registry.population.citizen(LAN.person).full_name == LAN.full_name
    finally:
        registry.close()
    if url:
        with psycopg.connect(url) as conn:
            rows = [r[0] for r in conn.execute("SELECT state FROM population_events")]
    else:
        db = settings.data_dir / "events" / "population.sqlite3"
        with sqlite3.connect(db) as conn:
            rows = [r[0] for r in conn.execute("SELECT state FROM stored_events")]
    assert rows
    for state in rows:
        assert b"079190123456" not in state
        assert b"Lan" not in state
