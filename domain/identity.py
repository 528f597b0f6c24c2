"""Who a person is: the 12-digit citizen identity number (CCCD), or a passport for foreigners."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import Enum

from domain.areas import PROVINCES
from domain.errors import InvalidIdNumber, InvalidPassport


class Sex(Enum):
    MALE = "male"
    FEMALE = "female"


FIRST_CENTURY = 1900
LAST_CENTURY = 2300


def century_sex_digit(birth_year: int, sex: Sex) -> int:
    """The 4th digit of a CCCD: even for men, odd for women, +2 per century from the 1900s."""
    century = birth_year // 100 * 100
    if not FIRST_CENTURY <= century <= LAST_CENTURY:
        raise InvalidIdNumber(
            f"birth year {birth_year} is outside 1900-2399", birth_year=birth_year
        )
    return (century - FIRST_CENTURY) // 100 * 2 + (1 if sex is Sex.FEMALE else 0)


@dataclass(frozen=True, order=True)
class NationalId:
    """A citizen identity number: province of birth registration, century/sex, birth year, serial.

    `NationalId.parse` checks the form; `check_against` checks digits 4-6 against the
    person's sex and date of birth, naming the digit that disagrees.
    """

    value: str

    def __post_init__(self) -> None:
        v = self.value
        if not (len(v) == 12 and v.isascii() and v.isdigit()):
            raise InvalidIdNumber(
                f"an ID number has 12 digits, got {len(v)} characters"
                if v.isdigit()
                else "an ID number has 12 digits and nothing else",
                id_number_length=len(v),
            )
        if v[:3] not in PROVINCES:
            raise InvalidIdNumber(
                f"digits 1-3 ({v[:3]}) are not a province code", province_code=v[:3]
            )

    @classmethod
    def parse(cls, text: str) -> NationalId:
        return cls(re.sub(r"[\s.-]", "", text))

    @property
    def province_code(self) -> str:
        return self.value[:3]

    @property
    def sex(self) -> Sex:
        return Sex.FEMALE if int(self.value[3]) % 2 else Sex.MALE

    @property
    def birth_year(self) -> int:
        return FIRST_CENTURY + int(self.value[3]) // 2 * 100 + int(self.value[4:6])

    def check_against(self, date_of_birth: date, sex: Sex) -> None:
        expected = century_sex_digit(date_of_birth.year, sex)
        if int(self.value[3]) != expected:
            raise InvalidIdNumber(
                f"digit 4 is {self.value[3]} but a {sex.value} born in "
                f"{date_of_birth.year} has {expected}",
                digit=4,
                expected=str(expected),
                found=self.value[3],
            )
        year_digits = f"{date_of_birth.year % 100:02d}"
        if self.value[4:6] != year_digits:
            raise InvalidIdNumber(
                f"digits 5-6 are {self.value[4:6]} but the birth year is {date_of_birth.year}",
                digit=5,
                expected=year_digits,
                found=self.value[4:6],
            )

    def __str__(self) -> str:
        return self.value


_PASSPORT = re.compile(r"^[A-Z0-9]{6,12}$")
_NATIONALITY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, order=True)
class Passport:
    """A foreign resident's passport number and ISO 3166-1 alpha-3 nationality."""

    number: str
    nationality: str

    def __post_init__(self) -> None:
        if not _PASSPORT.match(self.number):
            raise InvalidPassport("a passport number has 6-12 letters or digits")
        if not _NATIONALITY.match(self.nationality) or self.nationality == "VNM":
            raise InvalidPassport("nationality is a 3-letter country code other than VNM")

    def __str__(self) -> str:
        return f"{self.nationality}:{self.number}"


PersonId = NationalId | Passport


def parse_person_id(text: str) -> PersonId:
    """`012345678901` for a citizen, `FRA:AB123456` for a foreign resident."""
    if ":" in text:
        nationality, number = text.split(":", 1)
        return Passport(number.strip().upper(), nationality.strip().upper())
    return NationalId.parse(text)


def person_key(person: PersonId) -> str:
    """The stable text that aggregate ids are derived from."""
    return national_key(person.value) if isinstance(person, NationalId) else f"PP:{person}"


def national_key(id_number: str) -> str:
    """`person_key` of a valid national ID number, given as its digits."""
    return f"VN:{id_number}"
