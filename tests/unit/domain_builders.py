"""Builders and hypothesis strategies shared by the domain unit tests (no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from domain.areas import AreaCode
from domain.base import Actor
from domain.citizen import Citizen
from domain.clock import VIETNAM
from domain.dose_rules import DoseContext
from domain.doses import (
    AdverseEvent,
    Dose,
    DoseKind,
    InjectionSite,
    Screening,
    ScreeningOutcome,
    Severity,
)
from domain.identity import NationalId, Sex, century_sex_digit
from domain.mobility import Declaration, Transport, Trip
from domain.vaccination import VaccinationRecord
from domain.vaccines import CATALOGUE

STAFF = Actor("nurse1", "medical_staff", unit="79-HCM-001")
ADMIN = Actor("admin1", "admin")
OFFICER = Actor("officer1", "police", checkpoint="HN-CP-01")

ADULT_BIRTH = date(1990, 5, 1)
HCMC = AreaCode.parse("079.760.26734")
HANOI = AreaCode.parse("001.001.00001")

PRODUCTS = sorted(CATALOGUE.products)


def utc(year: int, month: int, day: int, hour: int = 3, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def vn(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A moment given in Vietnamese local time, returned in UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=VIETNAM).astimezone(UTC)


def national_id(
    date_of_birth: date = ADULT_BIRTH,
    sex: Sex = Sex.FEMALE,
    province: str = "079",
    serial: str = "123456",
) -> NationalId:
    """A CCCD whose digits 4-6 agree with the sex and birth year."""
    digit = century_sex_digit(date_of_birth.year, sex)
    return NationalId(f"{province}{digit}{date_of_birth.year % 100:02d}{serial}")


def new_record(person: NationalId | None = None) -> VaccinationRecord:
    return VaccinationRecord(uuid4(), person or national_id(), STAFF)


def new_citizen(
    full_name: str = "Nguyễn Thị Lan",
    date_of_birth: date = ADULT_BIRTH,
    sex: Sex = Sex.FEMALE,
    today: date = date(2021, 8, 1),
    person: NationalId | None = None,
) -> Citizen:
    return Citizen.register(
        uuid4(),
        person or national_id(date_of_birth, sex),
        full_name,
        date_of_birth,
        sex,
        HCMC,
        "0912345678",
        today,
        ADMIN,
    )


def dose(
    product: str,
    given_at: datetime,
    kind: DoseKind = DoseKind.PRIMARY,
    override_reason: str | None = None,
    lot: str = "LOT1",
    dose_id: UUID | None = None,
) -> Dose:
    return Dose(
        dose_id or uuid4(),
        product,
        lot,
        given_at,
        STAFF.unit or "",
        "nurse1",
        InjectionSite.LEFT_ARM,
        kind,
        (),
        override_reason,
    )


def context(
    record: VaccinationRecord,
    now: datetime,
    date_of_birth: date = ADULT_BIRTH,
) -> DoseContext:
    return DoseContext(date_of_birth, record.screenings, record.adverse_events, CATALOGUE, now)


def give(
    record: VaccinationRecord,
    product: str,
    given_at: datetime,
    kind: DoseKind = DoseKind.PRIMARY,
    *,
    now: datetime | None = None,
    date_of_birth: date = ADULT_BIRTH,
    override_reason: str | None = None,
    lot_problem: str | None = None,
) -> Dose:
    """Administer a dose, with `now` defaulting to the moment it is given."""
    ctx = context(record, now or given_at, date_of_birth)
    return record.administer(
        dose(product, given_at, kind, override_reason), ctx, lot_problem, STAFF
    )


def correct(
    record: VaccinationRecord,
    original: Dose,
    now: datetime,
    date_of_birth: date = ADULT_BIRTH,
    reason: str = "wrong entry at the site",
    lot_problem: str | None = None,
    **changes: Any,
) -> Dose:
    corrected = replace(original, deviations=(), override_reason=None)
    corrected = replace(corrected, **changes)
    return record.correct_dose(
        corrected, reason, context(record, now, date_of_birth), lot_problem, STAFF
    )


def screening(
    outcome: ScreeningOutcome,
    screened_at: datetime,
    postponed_until: date | None = None,
) -> Screening:
    return Screening(outcome, screened_at, STAFF.unit or "", postponed_until)


def adverse(given: Dose, severity: Severity, onset: datetime | None = None) -> AdverseEvent:
    return AdverseEvent(
        given.dose_id, onset or given.given_at + timedelta(hours=2), severity, "reaction"
    )


def declaration(
    declared_at: datetime,
    travel_date: date | None = None,
    valid_for: timedelta = timedelta(hours=72),
    origin: AreaCode = HCMC,
    destination: AreaCode = HANOI,
    plate: str | None = "51F-123.45",
) -> Declaration:
    trip = Trip(
        origin,
        destination,
        travel_date or declared_at.astimezone(VIETNAM).date(),
        Transport.CAR,
        plate,
        "HN-CP-01",
    )
    return Declaration(uuid4(), trip, (), False, False, None, declared_at, declared_at + valid_for)


# Strategies

products = st.sampled_from(PRODUCTS)
booster_products = st.sampled_from(CATALOGUE.booster_products())
dose_kinds = st.sampled_from(list(DoseKind))
severities = st.sampled_from(list(Severity))
sexes = st.sampled_from(list(Sex))
birth_dates = st.dates(min_value=date(1930, 1, 1), max_value=date(2012, 12, 31))
vietnamese_names = st.sampled_from(
    [
        "Nguyễn Thị Lan",
        "Trần Văn Hùng",
        "Lê Hoàng Anh",
        "Phạm Đức Minh",
        "Đặng Thị Ánh Tuyết",
        "Võ Quốc Bảo",
    ]
)
provinces = st.sampled_from(["001", "079", "048", "092", "031"])
