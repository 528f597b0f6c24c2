"""Citizen mobility: health declarations before a trip and the checks made at checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from uuid import UUID

from eventsourcing.domain import event

from domain.areas import AreaCode
from domain.base import Actor, RegistryAggregate
from domain.clock import local_day
from domain.errors import DeclarationInvalid, DeclarationNotFound
from domain.identity import PersonId

DEFAULT_VALIDITY = timedelta(hours=72)
LONGEST_ADVANCE = timedelta(days=7)
OLDEST_TEST = timedelta(days=7)
MAX_PLATE_LENGTH = 16


class Transport(Enum):
    CAR = "car"
    MOTORBIKE = "motorbike"
    BUS = "bus"
    TRUCK = "truck"
    TRAIN = "train"
    PLANE = "plane"
    BOAT = "boat"
    ON_FOOT = "on_foot"
    OTHER = "other"


class Symptom(Enum):
    FEVER = "fever"
    COUGH = "cough"
    SHORTNESS_OF_BREATH = "shortness_of_breath"
    SORE_THROAT = "sore_throat"
    LOSS_OF_TASTE_OR_SMELL = "loss_of_taste_or_smell"
    FATIGUE = "fatigue"


class TestKind(Enum):
    PCR = "pcr"
    RAPID_ANTIGEN = "rapid_antigen"


class TestOutcome(Enum):
    NEGATIVE = "negative"
    POSITIVE = "positive"


class Verdict(Enum):
    PASS = "pass"
    MEDICAL_CHECK = "medical_check"
    QUARANTINE = "quarantine"
    NO_DECLARATION = "no_declaration"


@dataclass(frozen=True)
class TestResult:
    kind: TestKind
    outcome: TestOutcome
    sampled_at: datetime


@dataclass(frozen=True)
class Trip:
    origin: AreaCode
    destination: AreaCode
    travel_date: date
    transport: Transport
    vehicle_plate: str | None = None
    checkpoint: str | None = None


@dataclass(frozen=True)
class Declaration:
    declaration_id: UUID
    trip: Trip
    symptoms: tuple[Symptom, ...]
    contact_with_confirmed_case: bool
    stayed_in_high_risk_area: bool
    test: TestResult | None
    declared_at: datetime
    valid_until: datetime

    @property
    def flags_medical_check(self) -> bool:
        return (
            bool(self.symptoms)
            or self.contact_with_confirmed_case
            or (self.test is not None and self.test.outcome is TestOutcome.POSITIVE)
        )

    def is_valid_at(self, moment: datetime) -> bool:
        return self.declared_at <= moment < self.valid_until


@dataclass(frozen=True)
class CheckpointCheck:
    checkpoint: str
    checked_at: datetime
    verdict: Verdict
    reasons: tuple[str, ...]
    declaration_id: UUID | None


class MobilityRecord(RegistryAggregate):
    """One person's health declarations and the checkpoint decisions about them."""

    TOPIC = "vaxreg.mobility:MobilityRecord"

    class Created(RegistryAggregate.Created):
        TOPIC = "vaxreg.mobility:MobilityRecord.Created"

    @event("Opened", topic="vaxreg.mobility:MobilityRecord.Opened")
    def __init__(self, id: UUID, person: PersonId, actor: Actor) -> None:
        self.person = person
        self.declarations: dict[UUID, Declaration] = {}
        self.checks: list[CheckpointCheck] = []

    def declare(self, declaration: Declaration, actor: Actor) -> None:
        _check_declaration(declaration)
        if declaration.declaration_id in self.declarations:
            raise DeclarationInvalid("this declaration was already made")
        self._declared(declaration, actor)

    def record_check(self, check: CheckpointCheck, actor: Actor) -> None:
        if check.declaration_id is not None and check.declaration_id not in self.declarations:
            raise DeclarationNotFound(
                "the checked declaration is not this person's",
                declaration_id=str(check.declaration_id),
            )
        if not check.checkpoint.strip():
            raise DeclarationInvalid("a check names its checkpoint")
        self._checked(check, actor)

    def current_declaration(self, moment: datetime) -> Declaration | None:
        valid = [d for d in self.declarations.values() if d.is_valid_at(moment)]
        return max(valid, key=lambda d: d.declared_at, default=None)

    @event("HealthDeclared", topic="vaxreg.mobility:MobilityRecord.HealthDeclared")
    def _declared(self, declaration: Declaration, actor: Actor) -> None:
        self.declarations[declaration.declaration_id] = declaration

    @event("CheckpointChecked", topic="vaxreg.mobility:MobilityRecord.CheckpointChecked")
    def _checked(self, check: CheckpointCheck, actor: Actor) -> None:
        self.checks.append(check)


def _check_declaration(declaration: Declaration) -> None:
    trip = declaration.trip
    if trip.origin == trip.destination:
        raise DeclarationInvalid("origin and destination are the same area")
    if not declaration.declared_at < declaration.valid_until:
        raise DeclarationInvalid("a declaration must be valid for some time")
    declared_on = local_day(declaration.declared_at)
    if trip.travel_date < declared_on:
        raise DeclarationInvalid("the travel date is in the past", declared_on=str(declared_on))
    if trip.travel_date > declared_on + LONGEST_ADVANCE:
        raise DeclarationInvalid(
            f"declare at most {LONGEST_ADVANCE.days} days before the trip",
            latest_travel_date=str(declared_on + LONGEST_ADVANCE),
        )
    if trip.vehicle_plate is not None and not 0 < len(trip.vehicle_plate) <= MAX_PLATE_LENGTH:
        raise DeclarationInvalid(f"a vehicle plate has 1-{MAX_PLATE_LENGTH} characters")
    test = declaration.test
    if test is not None and not (
        declaration.declared_at - OLDEST_TEST <= test.sampled_at <= declaration.declared_at
    ):
        raise DeclarationInvalid(
            f"a test result must be sampled in the {OLDEST_TEST.days} days before declaring"
        )
