"""The citizen identity number (CCCD) and passports."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from domain.areas import PROVINCES
from domain.errors import InvalidIdNumber, InvalidPassport
from domain.identity import (
    NationalId,
    Passport,
    Sex,
    century_sex_digit,
    parse_person_id,
    person_key,
)


class TestForm:
    def test_a_twelve_digit_number_of_a_known_province_is_accepted(self) -> None:
        cccd = NationalId("079190123456")
        assert cccd.value == "079190123456"
        assert str(cccd) == "079190123456"
        assert cccd.province_code == "079"

    @pytest.mark.parametrize("text", ["079 190 123 456", "079.190.123.456", "079-190-123456"])
    def test_parse_drops_spaces_dots_and_dashes(self, text: str) -> None:
        assert NationalId.parse(text) == NationalId("079190123456")

    @pytest.mark.parametrize(("text", "length"), [("07919012345", 11), ("0791901234567", 13)])
    def test_a_wrong_number_of_digits_is_refused_with_the_length(
        self, text: str, length: int
    ) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId(text)
        assert caught.value.code == "invalid_id_number"
        assert caught.value.details == {"id_number_length": length}
        assert f"got {length} characters" in str(caught.value)

    @pytest.mark.parametrize("text", ["07919012345X", "079190 23456", "٠٧٩١٩٠١٢٣٤٥٦", ""])
    def test_anything_but_ascii_digits_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId(text)
        assert caught.value.details["id_number_length"] == len(text)

    @pytest.mark.parametrize("province", ["000", "003", "005", "097", "999"])
    def test_digits_1_to_3_must_be_a_province_code(self, province: str) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId(f"{province}190123456")
        assert caught.value.details == {"province_code": province}

    @pytest.mark.parametrize("province", sorted(PROVINCES))
    def test_every_province_code_is_accepted(self, province: str) -> None:
        assert NationalId(f"{province}190123456").province_code == province

    def test_the_number_is_a_frozen_value(self) -> None:
        cccd = NationalId("079190123456")
        with pytest.raises(dataclasses.FrozenInstanceError):
            cccd.value = "001190123456"  # type: ignore[misc]
        assert NationalId("001190123456") < cccd


class TestDigitsFourToSix:
    @pytest.mark.parametrize(
        ("digit", "sex", "century"),
        [
            ("0", Sex.MALE, 1900),
            ("1", Sex.FEMALE, 1900),
            ("2", Sex.MALE, 2000),
            ("3", Sex.FEMALE, 2000),
            ("4", Sex.MALE, 2100),
            ("5", Sex.FEMALE, 2100),
            ("6", Sex.MALE, 2200),
            ("7", Sex.FEMALE, 2200),
            ("8", Sex.MALE, 2300),
            ("9", Sex.FEMALE, 2300),
        ],
    )
    def test_century_and_sex(self, digit: str, sex: Sex, century: int) -> None:
        cccd = NationalId(f"001{digit}07123456")
        assert cccd.sex is sex
        assert cccd.birth_year == century + 7
        assert century_sex_digit(century + 7, sex) == int(digit)

    @pytest.mark.parametrize("year", [1899, 2400, 1066])
    def test_a_birth_year_outside_the_table_has_no_digit(self, year: int) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            century_sex_digit(year, Sex.MALE)
        assert caught.value.details == {"birth_year": year}

    def test_matching_digits_pass(self) -> None:
        NationalId("079190123456").check_against(date(1990, 5, 1), Sex.FEMALE)
        NationalId("001205123456").check_against(date(2005, 1, 31), Sex.MALE)

    def test_a_century_digit_contradicting_the_birth_date_names_digit_4(self) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId("079390123456").check_against(date(1990, 5, 1), Sex.FEMALE)
        assert caught.value.details == {"digit": 4, "expected": "1", "found": "3"}

    def test_a_sex_digit_contradicting_the_sex_names_digit_4(self) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId("079190123456").check_against(date(1990, 5, 1), Sex.MALE)
        assert caught.value.details == {"digit": 4, "expected": "0", "found": "1"}

    def test_a_birth_year_mismatch_names_digit_5(self) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId("079190123456").check_against(date(1991, 5, 1), Sex.FEMALE)
        assert caught.value.details == {"digit": 5, "expected": "91", "found": "90"}
        assert "1991" in str(caught.value)

    def test_the_century_is_checked_before_the_year(self) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            NationalId("079190123456").check_against(date(2001, 5, 1), Sex.FEMALE)
        assert caught.value.details["digit"] == 4


class TestPassport:
    def test_a_foreign_passport(self) -> None:
        passport = Passport("AB123456", "FRA")
        assert str(passport) == "FRA:AB123456"

    @pytest.mark.parametrize("number", ["AB123", "AB1234567890X", "ab123456", "AB-12345", ""])
    def test_the_number_has_6_to_12_capital_letters_or_digits(self, number: str) -> None:
        with pytest.raises(InvalidPassport) as caught:
            Passport(number, "FRA")
        assert caught.value.code == "invalid_passport"

    @pytest.mark.parametrize("nationality", ["VNM", "FR", "FRAN", "fra", "F1A"])
    def test_nationality_is_three_letters_other_than_vietnam(self, nationality: str) -> None:
        with pytest.raises(InvalidPassport):
            Passport("AB123456", nationality)


class TestPersonIds:
    def test_parse_a_citizen_number(self) -> None:
        assert parse_person_id(" 079 190 123456 ") == NationalId("079190123456")

    def test_parse_a_passport_case_insensitively(self) -> None:
        assert parse_person_id("fra: ab123456") == Passport("AB123456", "FRA")

    def test_parse_refuses_a_bad_number(self) -> None:
        with pytest.raises(InvalidIdNumber):
            parse_person_id("003190123456")
        with pytest.raises(InvalidPassport):
            parse_person_id("VNM:AB123456")

    def test_keys_distinguish_citizens_from_foreigners(self) -> None:
        assert person_key(NationalId("079190123456")) == "VN:079190123456"
        assert person_key(Passport("AB123456", "FRA")) == "PP:FRA:AB123456"
