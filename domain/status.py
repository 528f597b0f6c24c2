"""Vaccination status and the next dose, as a pure function of a record and a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum

from domain.clock import local_day
from domain.dose_rules import nth_birthday, series_doses_required
from domain.doses import Dose, DoseKind, ScreeningOutcome, Severity
from domain.vaccination import VaccinationRecord
from domain.vaccines import Catalogue


class Status(Enum):
    UNVACCINATED = "unvaccinated"
    PARTIALLY_VACCINATED = "partially_vaccinated"
    FULLY_VACCINATED = "fully_vaccinated"
    BOOSTED = "boosted"


@dataclass(frozen=True)
class NextDose:
    number: int
    kind: DoseKind
    earliest: date
    products: tuple[str, ...]


@dataclass(frozen=True)
class VaccinationStatus:
    status: Status
    doses: int
    series_complete_on: date | None
    protected_from: date | None
    recovered_until: date | None
    next_dose: NextDose | None
    reasons: tuple[str, ...]

    def protected_on(self, day: date) -> bool:
        vaccinated = self.protected_from is not None and self.protected_from <= day
        recovered = self.recovered_until is not None and day <= self.recovered_until
        return vaccinated or recovered


@dataclass(frozen=True)
class _Given:
    """The valid doses of a record given by a moment, in order, and its primary series."""

    doses: list[Dose]
    primary: list[Dose]
    boosters: list[Dose]
    required: int
    """Primary doses the series needs (0 before the first)."""


def _given(record: VaccinationRecord, at: datetime, catalogue: Catalogue) -> _Given:
    doses = [d for d in record.valid_doses if d.given_at <= at]
    primary = [d for d in doses if d.kind is DoseKind.PRIMARY]
    boosters = [d for d in doses if d.kind is DoseKind.BOOSTER]
    return _Given(doses, primary, boosters, series_doses_required(primary, catalogue))


def vaccination_status(
    record: VaccinationRecord, date_of_birth: date, at: datetime, catalogue: Catalogue
) -> VaccinationStatus:
    today = local_day(at)
    given = _given(record, at, catalogue)
    primary, required = given.primary, given.required
    complete_on = primary[required - 1].given_on if primary and len(primary) >= required else None
    protected_from = (
        complete_on + timedelta(days=catalogue.protection_delay_days) if complete_on else None
    )
    recovered_until = (
        record.recovered_on + timedelta(days=catalogue.recovery_protection_days)
        if record.recovered_on
        else None
    )
    if not given.doses:
        status = Status.UNVACCINATED
    elif protected_from is None or today < protected_from:
        status = Status.PARTIALLY_VACCINATED
    elif given.boosters:
        status = Status.BOOSTED
    else:
        status = Status.FULLY_VACCINATED
    next_dose, reasons = _next_dose(record, given, date_of_birth, at, today, catalogue)
    return VaccinationStatus(
        status, len(given.doses), complete_on, protected_from, recovered_until, next_dose, reasons
    )


def _next_dose(
    record: VaccinationRecord,
    given: _Given,
    date_of_birth: date,
    at: datetime,
    today: date,
    catalogue: Catalogue,
) -> tuple[NextDose | None, tuple[str, ...]]:
    doses, primary, required = given.doses, given.primary, given.required
    screenings = [s for s in record.screenings if s.screened_at <= at]
    latest = screenings[-1] if screenings else None
    if latest is not None and latest.outcome is ScreeningOutcome.CONTRAINDICATED:
        return None, ("contraindicated at the last screening",)
    severe = {
        d.product
        for d in doses
        for a in record.adverse_events
        if a.dose_id == d.dose_id and a.severity is Severity.SEVERE
    }
    if primary and len(primary) < required:
        previous = primary[-1]
        kind = DoseKind.PRIMARY
        earliest = previous.given_on + catalogue.product(previous.product).minimum_interval
        candidates = [c for c in catalogue.products if catalogue.may_follow(previous.product, c)]
    elif not primary:
        kind, earliest, candidates = DoseKind.PRIMARY, today, list(catalogue.products)
    elif len(given.boosters) < catalogue.max_boosters:
        kind = DoseKind.BOOSTER
        earliest = doses[-1].given_on + timedelta(days=catalogue.booster_min_days_after_series)
        candidates = catalogue.booster_products()
    else:
        return None, ("the primary series and the boosters are complete",)
    reasons: list[str] = []
    if (
        latest is not None
        and latest.outcome is ScreeningOutcome.POSTPONED
        and latest.postponed_until
    ):
        earliest = max(earliest, latest.postponed_until)
        reasons.append(f"postponed until {latest.postponed_until}")
    if latest is not None and latest.outcome is ScreeningOutcome.REFER_TO_HOSPITAL:
        reasons.append("to be vaccinated in hospital under supervision")
    allowed = [c for c in sorted(candidates) if c not in severe]
    if not allowed:
        return None, (*reasons, "no product is allowed after a severe adverse event")
    ready_on = {
        c: max(earliest, nth_birthday(date_of_birth, catalogue.product(c).minimum_age_years))
        for c in allowed
    }
    first_day = min(ready_on.values())
    products = tuple(c for c in allowed if ready_on[c] == first_day)
    if first_day > earliest:
        reasons.append(f"old enough on {first_day}")
    return NextDose(len(doses) + 1, kind, first_day, products), tuple(reasons)
