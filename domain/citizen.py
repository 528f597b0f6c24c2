"""A person in the national population register, as the register and later corrections say."""

from __future__ import annotations

from datetime import date
from enum import Enum
from uuid import UUID

from eventsourcing.domain import event

from domain.areas import AreaCode
from domain.base import Actor, RegistryAggregate
from domain.errors import CitizenDeceased, CitizenMoved, IdentityMismatch, InvalidValue
from domain.identity import NationalId, PersonId, Sex
from domain.names import comparable, normalise_name, without_diacritics

MAX_NAME_LENGTH = 100
EARLIEST_BIRTH = date(1900, 1, 1)


class CitizenStatus(Enum):
    ACTIVE = "active"
    DECEASED = "deceased"
    MOVED = "moved"


class Citizen(RegistryAggregate):
    """Registered from the population register; corrected, moved or merged only by events."""

    TOPIC = "vaxreg.population:Citizen"

    class Created(RegistryAggregate.Created):
        TOPIC = "vaxreg.population:Citizen.Created"

    @classmethod
    def register(
        cls,
        id: UUID,
        person: PersonId,
        full_name: str,
        date_of_birth: date,
        sex: Sex,
        residence: AreaCode,
        phone: str | None,
        today: date,
        actor: Actor,
    ) -> Citizen:
        full_name = _valid_name(full_name)
        _check_birth_date(date_of_birth, today)
        if isinstance(person, NationalId):
            person.check_against(date_of_birth, sex)
        return cls(id, person, full_name, date_of_birth, sex, residence, _valid_phone(phone), actor)

    @event("Registered", topic="vaxreg.population:Citizen.Registered")
    def __init__(
        self,
        id: UUID,
        person: PersonId,
        full_name: str,
        date_of_birth: date,
        sex: Sex,
        residence: AreaCode,
        phone: str | None,
        actor: Actor,
    ) -> None:
        self.person = person
        self.full_name = full_name
        self.date_of_birth = date_of_birth
        self.sex = sex
        self.residence = residence
        self.phone = phone
        self.status = CitizenStatus.ACTIVE
        self.died_on: date | None = None
        self.moved_to: PersonId | None = None
        self.merged_from: list[PersonId] = []

    # Commands

    def change_residence(self, residence: AreaCode, actor: Actor) -> None:
        self.check_is_active()
        if residence != self.residence:
            self._residence_changed(residence, actor)

    def change_contact(self, phone: str | None, actor: Actor) -> None:
        self.check_is_active()
        phone = _valid_phone(phone)
        if phone != self.phone:
            self._contact_changed(phone, actor)

    def correct_record(
        self,
        reason: str,
        actor: Actor,
        today: date,
        full_name: str | None = None,
        date_of_birth: date | None = None,
        sex: Sex | None = None,
    ) -> None:
        """Correct identity data; the ID number's digits must still agree with the result."""
        self._check_is_not_moved()
        reason = _valid_reason(reason)
        name = _valid_name(full_name) if full_name is not None else None
        if date_of_birth is not None:
            _check_birth_date(date_of_birth, today)
        if isinstance(self.person, NationalId):
            self.person.check_against(date_of_birth or self.date_of_birth, sex or self.sex)
        new_name = name if name != self.full_name else None
        new_birth = date_of_birth if date_of_birth != self.date_of_birth else None
        new_sex = sex if sex != self.sex else None
        if new_name or new_birth or new_sex:
            self._record_corrected(reason, actor, new_name, new_birth, new_sex)

    def record_death(self, died_on: date, actor: Actor, today: date) -> None:
        self._check_is_not_moved()
        if self.status is CitizenStatus.DECEASED:
            raise CitizenDeceased("the death is already recorded", died_on=str(self.died_on))
        if not self.date_of_birth <= died_on <= today:
            raise InvalidValue("the date of death must lie between birth and today")
        self._died(died_on, actor)

    def move_to(self, target: PersonId, reason: str, actor: Actor) -> None:
        """This record belongs under another ID number: say where it went."""
        self._check_is_not_moved()
        if target == self.person:
            raise InvalidValue("a record cannot move to its own ID number")
        self._moved_to(target, _valid_reason(reason), actor)

    def receive(self, source: PersonId, reason: str, actor: Actor) -> None:
        """Another record (a wrong ID number or a duplicate) was moved into this one."""
        self._check_is_not_moved()
        self._merged_from(source, _valid_reason(reason), actor)

    # Queries

    def check_identity(self, full_name: str, date_of_birth: date) -> None:
        """Refuse identity data captured at a site that disagrees with the register."""
        self._check_is_not_moved()
        if comparable(full_name) != comparable(self.full_name):
            only_diacritics = without_diacritics(full_name) == without_diacritics(self.full_name)
            raise IdentityMismatch(
                "the name differs from the population register only in diacritics"
                if only_diacritics
                else "the name does not match the population register",
                field="full_name",
                only_diacritics=only_diacritics,
            )
        if date_of_birth != self.date_of_birth:
            raise IdentityMismatch(
                "the date of birth does not match the population register",
                field="date_of_birth",
            )

    def age_on(self, day: date) -> int:
        born = self.date_of_birth
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    # Guards

    def _check_is_not_moved(self) -> None:
        if self.moved_to is not None:
            raise CitizenMoved(
                f"this record was moved to {self.moved_to}", moved_to=str(self.moved_to)
            )

    def check_is_active(self) -> None:
        """Refuse new facts about a record that moved or a person who died."""
        self._check_is_not_moved()
        if self.status is CitizenStatus.DECEASED:
            raise CitizenDeceased("the citizen is recorded as deceased", died_on=str(self.died_on))

    # Events

    @event("ResidenceChanged", topic="vaxreg.population:Citizen.ResidenceChanged")
    def _residence_changed(self, residence: AreaCode, actor: Actor) -> None:
        self.residence = residence

    @event("ContactChanged", topic="vaxreg.population:Citizen.ContactChanged")
    def _contact_changed(self, phone: str | None, actor: Actor) -> None:
        self.phone = phone

    @event("RecordCorrected", topic="vaxreg.population:Citizen.RecordCorrected")
    def _record_corrected(
        self,
        reason: str,
        actor: Actor,
        full_name: str | None,
        date_of_birth: date | None,
        sex: Sex | None,
    ) -> None:
        self.full_name = full_name or self.full_name
        self.date_of_birth = date_of_birth or self.date_of_birth
        self.sex = sex or self.sex

    @event("Died", topic="vaxreg.population:Citizen.Died")
    def _died(self, died_on: date, actor: Actor) -> None:
        self.status = CitizenStatus.DECEASED
        self.died_on = died_on

    @event("MovedTo", topic="vaxreg.population:Citizen.MovedTo")
    def _moved_to(self, target: PersonId, reason: str, actor: Actor) -> None:
        self.status = CitizenStatus.MOVED
        self.moved_to = target

    @event("MergedFrom", topic="vaxreg.population:Citizen.MergedFrom")
    def _merged_from(self, source: PersonId, reason: str, actor: Actor) -> None:
        self.merged_from.append(source)


def _valid_name(full_name: str) -> str:
    name = normalise_name(full_name)
    if not name:
        raise InvalidValue("the full name is missing", field="full_name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidValue(
            f"the full name is longer than {MAX_NAME_LENGTH} characters", field="full_name"
        )
    if any(not (c.isalpha() or c in " '-.") for c in name):
        raise InvalidValue(
            "the full name may hold only letters, spaces, ' - and .", field="full_name"
        )
    return name


def _check_birth_date(date_of_birth: date, today: date) -> None:
    if not EARLIEST_BIRTH <= date_of_birth <= today:
        raise InvalidValue(
            f"the date of birth must lie between {EARLIEST_BIRTH} and today ({today})",
            field="date_of_birth",
        )


def _valid_phone(phone: str | None) -> str | None:
    if phone is None or not phone.strip():
        return None
    digits = phone.strip().replace(" ", "")
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    if not (len(digits) == 10 and digits.isdigit() and digits.startswith("0")):
        raise InvalidValue("a phone number is 0 followed by 9 digits (or +84 and 9 digits)")
    return digits


def _valid_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidValue("a reason is required", field="reason")
    return reason
