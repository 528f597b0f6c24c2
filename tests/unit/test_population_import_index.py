"""The import index: keyed per-citizen field hashes and folding Citizen events into them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

from domain.areas import AreaCode
from domain.base import Actor, recording_clock
from domain.citizen import Citizen
from domain.identity import NationalId, Sex
from infrastructure.population.index import (
    BIRTH,
    DEATH,
    NAME,
    PHONE,
    RESIDENCE,
    CitizenValues,
    FieldHasher,
    IndexRow,
    changed_fields,
    fold,
)

KEY = b"index-test-key-0123456789"
ACTOR = Actor("importer", "system")
TODAY = date(2021, 8, 2)
LAN = CitizenValues(
    "Nguyễn Thị Lan", date(1990, 5, 1), Sex.FEMALE, AreaCode.parse("079.760.26734"), None, None
)


def registered(citizen_id: UUID) -> Citizen:
    with recording_clock(lambda: datetime(2021, 8, 2, tzinfo=UTC)):
        return Citizen.register(
            citizen_id,
            NationalId("079190123456"),
            LAN.full_name,
            LAN.date_of_birth,
            LAN.sex,
            LAN.residence,
            LAN.phone,
            today=TODAY,
            actor=ACTOR,
        )


def test_hashes_are_keyed_and_salted_per_citizen() -> None:
    one, two = uuid4(), uuid4()
    hasher = FieldHasher(KEY)

    assert hasher.hashes(one, LAN) == FieldHasher(KEY).hashes(one, LAN)
    assert hasher.hashes(one, LAN) != FieldHasher(KEY + b"x").hashes(one, LAN)
    assert set(hasher.hashes(one, LAN)).isdisjoint(hasher.hashes(two, LAN))
    assert all(-(2**63) <= h < 2**63 for h in hasher.hashes(one, LAN))


def test_only_the_fields_that_differ_are_changed() -> None:
    citizen_id = uuid4()
    hasher = FieldHasher(KEY)
    moved = replace(LAN, residence=AreaCode.parse("001.001.00003"), phone="0912345678")
    died = replace(LAN, died_on=date(2021, 6, 1))

    stored = hasher.hashes(citizen_id, LAN)
    assert changed_fields(stored, hasher.hashes(citizen_id, moved), False) == {RESIDENCE, PHONE}
    assert changed_fields(stored, hasher.hashes(citizen_id, died), True) == {DEATH}
    assert changed_fields(hasher.hashes(citizen_id, died), stored, False) == set()


def test_folding_the_events_gives_the_hashes_of_the_final_state() -> None:
    citizen_id = uuid4()
    hasher = FieldHasher(KEY)
    citizen = registered(citizen_id)
    with recording_clock(lambda: datetime(2021, 8, 3, tzinfo=UTC)):
        citizen.correct_record("typo", ACTOR, TODAY, full_name="Nguyễn Thị Lành")
        citizen.change_residence(AreaCode.parse("001.001.00003"), ACTOR)
        citizen.change_contact("0912345678", ACTOR)
        citizen.record_death(date(2021, 7, 1), ACTOR, TODAY)
        citizen.move_to(NationalId("079190123457"), "wrong number", ACTOR)

    row: IndexRow | None = None
    for event in citizen.collect_events():
        row = fold(hasher, row, event)

    final = CitizenValues(
        "Nguyễn Thị Lành",
        LAN.date_of_birth,
        LAN.sex,
        AreaCode.parse("001.001.00003"),
        "0912345678",
        date(2021, 7, 1),
    )
    assert row == IndexRow(citizen_id, 6, hasher.hashes(citizen_id, final))


def test_a_correction_changes_only_the_fields_it_names() -> None:
    citizen_id = uuid4()
    hasher = FieldHasher(KEY)
    citizen = registered(citizen_id)
    with recording_clock(lambda: datetime(2021, 8, 3, tzinfo=UTC)):
        citizen.correct_record("birth", ACTOR, TODAY, date_of_birth=date(1990, 5, 2))
    created, corrected = citizen.collect_events()

    before = fold(hasher, None, created)
    after = fold(hasher, before, corrected)

    assert before is not None
    assert after is not None
    differing = {
        i for i, (a, b) in enumerate(zip(before.hashes, after.hashes, strict=True)) if a != b
    }
    assert differing == {BIRTH}
    assert after.hashes[NAME] == before.hashes[NAME]


def test_events_before_the_registration_fold_to_nothing() -> None:
    citizen = registered(uuid4())
    with recording_clock(lambda: datetime(2021, 8, 3, tzinfo=UTC)):
        citizen.change_contact("0912345678", ACTOR)
    _, changed = citizen.collect_events()

    assert fold(FieldHasher(KEY), None, changed) is None
