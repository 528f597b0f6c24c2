"""Group commit on PostgreSQL: concurrent commands share transactions, conflicts stay local."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from application.commands import Request
from application.immunization import LOT_CACHE_SECONDS, IdentityAtSite
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.doses import ScreeningOutcome
from domain.errors import LotUnusable
from domain.identity import NationalId, PersonId, Sex, century_sex_digit
from domain.vaccination import VaccinationRecord
from infrastructure.bootstrap import Registry, bootstrap
from tests.support.registry import (
    ADMIN,
    NURSE,
    MovableClock,
    build_registry,
    dose,
    registry_settings,
)

CITIZENS = 60


def _record(registry: Registry, person: PersonId) -> VaccinationRecord:
    record = registry.immunization.vaccination_record(person)
    assert record is not None
    return record


def _citizen(n: int) -> CitizenDetails:
    born = date(1980 + n % 20, 1 + n % 12, 1 + n % 28)
    sex = Sex.FEMALE if n % 2 else Sex.MALE
    id_number = f"001{century_sex_digit(born.year, sex)}{born.year % 100:02d}{n:06d}"
    return CitizenDetails(
        NationalId(id_number), f"Trần Văn {chr(65 + n % 26)}", born, sex, AreaCode("001"), None
    )


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path, postgres_url), MovableClock())
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2022, 6, 1))
    yield registry
    registry.close()


def test_concurrent_doses_are_saved_in_shared_transactions(registry: Registry) -> None:
    people = [_citizen(n) for n in range(CITIZENS)]
    for person in people:
        registry.population.register_citizen(ADMIN, person)
    saves: list[int] = []
    original = registry.immunization.save

    def counting_save(*events: Any, **kwargs: Any) -> Any:
        saves.append(len(events))
        return original(*events, **kwargs)

    registry.immunization.save = counting_save  # type: ignore[method-assign]

    def give(person: CitizenDetails) -> str:
        site = IdentityAtSite(person.person, person.full_name, person.date_of_birth)
        outcome = registry.immunization.record_dose(
            Request(NURSE, f"dose-{person.person}"),
            site,
            dose("comirnaty", "PF1", registry.clock()),
        )
        return outcome.position

    with ThreadPoolExecutor(max_workers=16) as pool:
        positions = list(pool.map(give, people))

    assert len(set(positions)) == CITIZENS
    events_per_first_dose = 3  # record opened, dose administered, request receipt
    assert sum(saves) == events_per_first_dose * CITIZENS
    assert len(saves) < CITIZENS
    for person in people:
        record = registry.immunization.vaccination_record(person.person)
        assert record is not None
        assert len(record.valid_doses) == 1


def test_a_conflicting_member_fails_alone_and_the_rest_of_its_batch_commits(
    registry: Registry,
) -> None:
    """A slow first flush lets three saves queue up; one of them is stale."""
    people = [_citizen(n) for n in range(4)]
    for person in people:
        registry.population.register_citizen(ADMIN, person)
        site = IdentityAtSite(person.person, person.full_name, person.date_of_birth)
        registry.immunization.register_for_vaccination(Request(NURSE), site, 1)
    records = [_record(registry, p.person) for p in people]
    registry.immunization.screen(Request(NURSE), people[1].person, ScreeningOutcome.ELIGIBLE)
    for record in records:
        record.register("79-HCM-001", 3, NURSE)
    batch_sizes: list[int] = []
    original = registry.immunization.save

    def slow_first_save(*events: Any, **kwargs: Any) -> Any:
        batch_sizes.append(len(events))
        if len(batch_sizes) == 1:
            time.sleep(0.3)
        return original(*events, **kwargs)

    registry.immunization.save = slow_first_save  # type: ignore[method-assign]
    committer = registry.immunization.committer
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        for record in records:
            futures.append(pool.submit(committer.save, [record]))
            time.sleep(0.05)
    errors = [f.exception() for f in futures]

    assert batch_sizes[:2] == [1, 3]
    assert [type(e).__name__ for e in errors] == [
        "NoneType",
        "IntegrityError",
        "NoneType",
        "NoneType",
    ]
    for n in (0, 2, 3):
        saved = registry.immunization.vaccination_record(people[n].person)
        assert saved is not None
        assert saved.registrations == [("79-HCM-001", 1), ("79-HCM-001", 3)]


def test_a_recall_reaches_doses_at_once_here_and_within_the_lot_cache_time_elsewhere(
    registry: Registry, tmp_path: Path, postgres_url: str
) -> None:
    people = [_citizen(n) for n in range(4)]
    for person in people:
        registry.population.register_citizen(ADMIN, person)
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF2", date(2022, 6, 1))

    def give(person: CitizenDetails, lot: str) -> Any:
        site = IdentityAtSite(person.person, person.full_name, person.date_of_birth)
        return registry.immunization.record_dose(
            Request(NURSE), site, dose("comirnaty", lot, registry.clock())
        )

    assert give(people[0], "PF1").result["deviations"] == []
    registry.immunization.recall_lot(ADMIN, "comirnaty", "PF1", "cold chain broken")
    with pytest.raises(LotUnusable):
        give(people[1], "PF1")

    assert give(people[2], "PF2").result["deviations"] == []
    elsewhere = bootstrap(registry.settings, clock=registry.clock)
    try:
        elsewhere.immunization.recall_lot(ADMIN, "comirnaty", "PF2", "cold chain broken")
    finally:
        elsewhere.close()
    time.sleep(LOT_CACHE_SECONDS)
    with pytest.raises(LotUnusable):
        give(people[3], "PF2")
