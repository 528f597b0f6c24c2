"""The Citizen aggregate and the name rules it compares identities with."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date
from uuid import uuid4

import pytest

from domain.areas import AreaCode
from domain.base import recording_clock
from domain.citizen import Citizen, CitizenStatus
from domain.errors import (
    CitizenDeceased,
    CitizenMoved,
    IdentityMismatch,
    InvalidIdNumber,
    InvalidValue,
)
from domain.identity import NationalId, Passport, Sex
from domain.names import comparable, masked, normalise_name, without_diacritics
from tests.unit.domain_builders import ADMIN, ADULT_BIRTH, HANOI, HCMC, new_citizen, utc

TODAY = date(2021, 8, 1)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


class TestNames:
    def test_normalise_makes_nfc_and_collapses_whitespace(self) -> None:
        decomposed = nfd("  Nguyễn\tThị \n Lan ")
        assert decomposed != "  Nguyễn\tThị \n Lan "
        assert normalise_name(decomposed) == "Nguyễn Thị Lan"
        assert unicodedata.is_normalized("NFC", normalise_name(decomposed))

    def test_comparable_ignores_case_but_not_diacritics(self) -> None:
        assert comparable("NGUYỄN THỊ LAN") == comparable("nguyễn thị  lan")
        assert comparable("Nguyen Thi Lan") != comparable("Nguyễn Thị Lan")

    def test_without_diacritics(self) -> None:
        assert without_diacritics("Đặng Thị Ánh") == "dang thi anh"
        assert without_diacritics(nfd("Nguyễn")) == "nguyen"

    @pytest.mark.parametrize(
        ("name", "shown"),
        [
            ("Nguyễn Văn An", "Nguyễn V. A."),
            ("  Đặng   Thị Ánh  Tuyết ", "Đặng T. Á. T."),
            ("Lan", "Lan"),
        ],
    )
    def test_masked(self, name: str, shown: str) -> None:
        assert masked(name) == shown
        assert masked(nfd(name)) == shown


class TestRegister:
    def test_register_stores_the_normalised_name(self) -> None:
        with recording_clock(lambda: utc(2021, 8, 1)):
            citizen = new_citizen(full_name=nfd("  Nguyễn  Thị Lan "))
        assert citizen.full_name == "Nguyễn Thị Lan"
        assert citizen.status is CitizenStatus.ACTIVE
        assert citizen.created_on == utc(2021, 8, 1)
        assert [type(e).__name__ for e in citizen.collect_events()] == ["Registered"]

    def test_the_id_digits_must_agree_with_the_person(self) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            new_citizen(person=NationalId("079190123456"), date_of_birth=date(1991, 5, 1))
        assert caught.value.details["digit"] == 5
        with pytest.raises(InvalidIdNumber) as caught:
            new_citizen(person=NationalId("079190123456"), sex=Sex.MALE)
        assert caught.value.details["digit"] == 4

    def test_a_passport_holder_has_no_digits_to_check(self) -> None:
        citizen = Citizen.register(
            uuid4(),
            Passport("AB123456", "FRA"),
            "Jean Dupont",
            ADULT_BIRTH,
            Sex.MALE,
            HCMC,
            None,
            TODAY,
            ADMIN,
        )
        assert citizen.person == Passport("AB123456", "FRA")

    @pytest.mark.parametrize("name", ["", "   ", "Lan2", "Nguyễn_Lan", "x" * 101])
    def test_bad_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidValue) as caught:
            new_citizen(full_name=name)
        assert caught.value.details == {"field": "full_name"}

    def test_allowed_punctuation_in_names(self) -> None:
        assert new_citizen(full_name="Mary-Jane O'Neil Jr.").full_name == "Mary-Jane O'Neil Jr."

    @pytest.mark.parametrize("born", [date(1899, 12, 31), date(2021, 8, 2)])
    def test_the_birth_date_lies_between_1900_and_today(self, born: date) -> None:
        with pytest.raises((InvalidValue, InvalidIdNumber)) as caught:
            Citizen.register(
                uuid4(),
                Passport("AB123456", "FRA"),
                "Jean Dupont",
                born,
                Sex.MALE,
                HCMC,
                None,
                TODAY,
                ADMIN,
            )
        assert caught.value.details == {"field": "date_of_birth"}

    @pytest.mark.parametrize(
        ("phone", "stored"),
        [("+84912345678", "0912345678"), (" 0912 345 678 ", "0912345678"), ("  ", None)],
    )
    def test_phone_numbers(self, phone: str, stored: str | None) -> None:
        citizen = new_citizen()
        citizen.change_contact(phone, ADMIN)
        assert citizen.phone == stored

    @pytest.mark.parametrize("phone", ["912345678", "09123456789", "1912345678", "+8591234567"])
    def test_bad_phone_numbers(self, phone: str) -> None:
        with pytest.raises(InvalidValue):
            new_citizen().change_contact(phone, ADMIN)


class TestIdentityCheck:
    @pytest.mark.parametrize("name", ["Nguyễn Thị Lan", "NGUYỄN THỊ LAN", " nguyễn  thị lan"])
    def test_case_whitespace_and_normal_form_do_not_matter(self, name: str) -> None:
        new_citizen().check_identity(name, ADULT_BIRTH)
        new_citizen().check_identity(nfd(name), ADULT_BIRTH)

    @pytest.mark.parametrize("name", ["Nguyen Thi Lan", "Nguyễn Thi Lan", "Nguyễn Thị Làn"])
    def test_a_name_differing_only_in_diacritics_is_flagged_as_such(self, name: str) -> None:
        with pytest.raises(IdentityMismatch) as caught:
            new_citizen().check_identity(name, ADULT_BIRTH)
        assert caught.value.details == {"field": "full_name", "only_diacritics": True}
        assert "diacritics" in str(caught.value)

    def test_d_with_stroke_counts_as_a_diacritic(self) -> None:
        with pytest.raises(IdentityMismatch) as caught:
            new_citizen(full_name="Đặng Văn Nam").check_identity("Dang Van Nam", ADULT_BIRTH)
        assert caught.value.details["only_diacritics"] is True

    def test_a_different_name(self) -> None:
        with pytest.raises(IdentityMismatch) as caught:
            new_citizen().check_identity("Trần Văn Hùng", ADULT_BIRTH)
        assert caught.value.details == {"field": "full_name", "only_diacritics": False}

    def test_a_different_birth_date(self) -> None:
        with pytest.raises(IdentityMismatch) as caught:
            new_citizen().check_identity("Nguyễn Thị Lan", date(1990, 5, 2))
        assert caught.value.details == {"field": "date_of_birth"}

    def test_age(self) -> None:
        citizen = new_citizen()
        assert citizen.age_on(date(2008, 4, 30)) == 17
        assert citizen.age_on(date(2008, 5, 1)) == 18


class TestCorrections:
    def test_a_name_correction(self) -> None:
        citizen = new_citizen()
        citizen.collect_events()
        citizen.correct_record("typo", ADMIN, TODAY, full_name="Nguyễn Thị  Lanh")
        assert citizen.full_name == "Nguyễn Thị Lanh"
        (event,) = citizen.collect_events()
        assert type(event).__name__ == "RecordCorrected"
        assert event.reason == "typo"  # type: ignore[attr-defined]
        assert event.date_of_birth is None  # type: ignore[attr-defined]

    def test_a_birth_date_within_the_same_year_keeps_the_digits_consistent(self) -> None:
        citizen = new_citizen()
        citizen.correct_record("register said 1 May", ADMIN, TODAY, date_of_birth=date(1990, 6, 1))
        assert citizen.date_of_birth == date(1990, 6, 1)

    def test_a_birth_year_contradicting_the_id_is_refused(self) -> None:
        citizen = new_citizen()
        citizen.collect_events()
        with pytest.raises(InvalidIdNumber) as caught:
            citizen.correct_record("wrong year", ADMIN, TODAY, date_of_birth=date(1991, 5, 1))
        assert caught.value.details["digit"] == 5
        with pytest.raises(InvalidIdNumber) as caught:
            citizen.correct_record(
                "wrong century", ADMIN, date(2095, 1, 1), date_of_birth=date(2090, 5, 1)
            )
        assert caught.value.details["digit"] == 4
        assert citizen.date_of_birth == ADULT_BIRTH
        assert citizen.collect_events() == []

    def test_a_sex_contradicting_the_id_is_refused(self) -> None:
        citizen = new_citizen()
        with pytest.raises(InvalidIdNumber) as caught:
            citizen.correct_record("sex", ADMIN, TODAY, sex=Sex.MALE)
        assert caught.value.details["digit"] == 4
        assert citizen.sex is Sex.FEMALE

    def test_sex_and_id_corrected_together_for_a_passport(self) -> None:
        citizen = Citizen.register(
            uuid4(),
            Passport("AB123456", "FRA"),
            "Jean Dupont",
            ADULT_BIRTH,
            Sex.FEMALE,
            HCMC,
            None,
            TODAY,
            ADMIN,
        )
        citizen.correct_record("entered wrongly", ADMIN, TODAY, sex=Sex.MALE)
        assert citizen.sex is Sex.MALE

    def test_a_correction_needs_a_reason_and_a_sensible_date(self) -> None:
        citizen = new_citizen()
        with pytest.raises(InvalidValue) as caught:
            citizen.correct_record("  ", ADMIN, TODAY, full_name="Nguyễn Thị Lanh")
        assert caught.value.details == {"field": "reason"}
        with pytest.raises(InvalidValue):
            citizen.correct_record("x", ADMIN, TODAY, date_of_birth=date(2021, 8, 2))

    def test_a_correction_changing_nothing_records_nothing(self) -> None:
        citizen = new_citizen()
        citizen.collect_events()
        citizen.correct_record("same", ADMIN, TODAY, full_name=" nguyễn thị lan".title())
        citizen.correct_record("same", ADMIN, TODAY, date_of_birth=ADULT_BIRTH, sex=Sex.FEMALE)
        assert citizen.collect_events() == []


class TestLifecycle:
    def test_residence_changes_only_when_different(self) -> None:
        citizen = new_citizen()
        citizen.collect_events()
        citizen.change_residence(HCMC, ADMIN)
        assert citizen.collect_events() == []
        citizen.change_residence(HANOI, ADMIN)
        assert citizen.residence == HANOI
        assert len(citizen.collect_events()) == 1

    def test_death(self) -> None:
        citizen = new_citizen()
        citizen.record_death(date(2021, 7, 30), ADMIN, TODAY)
        assert citizen.status is CitizenStatus.DECEASED
        assert citizen.died_on == date(2021, 7, 30)
        with pytest.raises(CitizenDeceased) as caught:
            citizen.record_death(date(2021, 7, 31), ADMIN, TODAY)
        assert caught.value.details == {"died_on": "2021-07-30"}
        with pytest.raises(CitizenDeceased):
            citizen.change_residence(HANOI, ADMIN)
        with pytest.raises(CitizenDeceased):
            citizen.change_contact("0987654321", ADMIN)

    @pytest.mark.parametrize("died_on", [date(1990, 4, 30), date(2021, 8, 2)])
    def test_death_lies_between_birth_and_today(self, died_on: date) -> None:
        with pytest.raises(InvalidValue):
            new_citizen().record_death(died_on, ADMIN, TODAY)

    def test_move_to_another_id(self) -> None:
        citizen = new_citizen()
        target = NationalId("079190654321")
        citizen.move_to(target, " wrong   number ", ADMIN)
        assert citizen.status is CitizenStatus.MOVED
        assert citizen.moved_to == target
        commands: tuple[Callable[[], object], ...] = (
            lambda: citizen.check_identity("Nguyễn Thị Lan", ADULT_BIRTH),
            lambda: citizen.change_residence(HANOI, ADMIN),
            lambda: citizen.correct_record("x", ADMIN, TODAY, full_name="Lan"),
            lambda: citizen.record_death(TODAY, ADMIN, TODAY),
            lambda: citizen.move_to(NationalId("001190654321"), "again", ADMIN),
            lambda: citizen.receive(NationalId("001190654321"), "merge", ADMIN),
        )
        for command in commands:
            with pytest.raises(CitizenMoved) as caught:
                command()
            assert caught.value.details == {"moved_to": "079190654321"}

    def test_move_needs_another_id_and_a_reason(self) -> None:
        citizen = new_citizen()
        with pytest.raises(InvalidValue):
            citizen.move_to(citizen.person, "same", ADMIN)
        with pytest.raises(InvalidValue):
            citizen.move_to(NationalId("079190654321"), " ", ADMIN)
        assert citizen.moved_to is None

    def test_receive(self) -> None:
        citizen = new_citizen()
        sources: list[NationalId | Passport] = [
            NationalId("079190654321"),
            Passport("AB123456", "FRA"),
        ]
        for source in sources:
            citizen.receive(source, "duplicate record", ADMIN)
        assert citizen.merged_from == sources
        with pytest.raises(InvalidValue):
            citizen.receive(NationalId("079190000001"), "", ADMIN)

    def test_events_are_timed_by_the_recording_clock(self) -> None:
        with recording_clock(lambda: utc(2021, 8, 1)):
            citizen = new_citizen()
        with recording_clock(lambda: utc(2021, 9, 1)):
            citizen.change_residence(AreaCode("001"), ADMIN)
        assert citizen.created_on == utc(2021, 8, 1)
        assert citizen.modified_on == utc(2021, 9, 1)
