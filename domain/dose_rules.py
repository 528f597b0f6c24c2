"""The rules a dose must obey, as pure functions over the doses before it.

Each rule returns the violations it finds; the record raises the first one unless staff
record the dose with an override reason, in which case the codes are kept on the dose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from domain.doses import AdverseEvent, Dose, DoseKind, Screening, ScreeningOutcome, Severity
from domain.errors import (
    BoosterTooEarly,
    Contraindicated,
    DoseBeforeBirth,
    DoseInFuture,
    DoseRuleViolation,
    DuplicateDose,
    IntervalTooShort,
    MixingNotAllowed,
    Postponed,
    TooManyDoses,
    TooYoungForProduct,
)
from domain.vaccines import Catalogue

CLOCK_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class DoseContext:
    """What the rules need to know besides the doses: the person and the record's findings."""

    date_of_birth: date
    screenings: Sequence[Screening]
    adverse_events: Sequence[AdverseEvent]
    catalogue: Catalogue
    now: datetime


def age_on(date_of_birth: date, day: date) -> int:
    return (
        day.year
        - date_of_birth.year
        - ((day.month, day.day) < (date_of_birth.month, date_of_birth.day))
    )


def violations(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    """Every rule `dose` breaks, given the valid doses given before it (oldest first)."""
    found: list[DoseRuleViolation] = []
    for rule in (_timing, _age, _duplicate, _screening, _series):
        found.extend(rule(dose, earlier, ctx))
    return found


def series_doses_required(primary: Sequence[Dose], catalogue: Catalogue) -> int:
    return catalogue.product(primary[0].product).primary_doses if primary else 0


def _timing(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    if dose.given_on < ctx.date_of_birth:
        return [
            DoseBeforeBirth(
                "the dose is dated before the person's birth", date_of_birth=str(ctx.date_of_birth)
            )
        ]
    if dose.given_at > ctx.now + CLOCK_TOLERANCE:
        return [DoseInFuture("the dose is dated in the future", given_at=dose.given_at.isoformat())]
    return []


def _age(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    product = ctx.catalogue.product(dose.product)
    age = age_on(ctx.date_of_birth, dose.given_on)
    if age < product.minimum_age_years:
        earliest = nth_birthday(ctx.date_of_birth, product.minimum_age_years)
        return [
            TooYoungForProduct(
                f"{product.name} is given from age {product.minimum_age_years}; "
                f"the person is {age}",
                minimum_age=product.minimum_age_years,
                age=age,
                earliest_date=str(earliest),
            )
        ]
    return []


def _duplicate(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    for other in earlier:
        if other.product == dose.product and other.given_on == dose.given_on:
            return [
                DuplicateDose(
                    f"a dose of {dose.product} is already recorded on {dose.given_on}",
                    existing_dose_id=str(other.dose_id),
                )
            ]
    return []


def _screening(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    found: list[DoseRuleViolation] = []
    before = [s for s in ctx.screenings if s.screened_at <= dose.given_at]
    latest = before[-1] if before else None
    if latest is not None and latest.outcome is ScreeningOutcome.CONTRAINDICATED:
        found.append(
            Contraindicated(
                "the last screening found a contraindication",
                screened_at=latest.screened_at.isoformat(),
            )
        )
    if (
        latest is not None
        and latest.outcome is ScreeningOutcome.POSTPONED
        and latest.postponed_until is not None
        and dose.given_on < latest.postponed_until
    ):
        found.append(
            Postponed(
                f"vaccination is postponed until {latest.postponed_until}",
                earliest_date=str(latest.postponed_until),
            )
        )
    severe_products = {
        d.product
        for d in earlier
        for a in ctx.adverse_events
        if a.dose_id == d.dose_id and a.severity is Severity.SEVERE and a.onset <= dose.given_at
    }
    if dose.product in severe_products:
        found.append(
            Contraindicated(
                f"a severe adverse event followed an earlier dose of {dose.product}",
                product=dose.product,
            )
        )
    return found


def _series(dose: Dose, earlier: Sequence[Dose], ctx: DoseContext) -> list[DoseRuleViolation]:
    catalogue = ctx.catalogue
    primary = [d for d in earlier if d.kind is DoseKind.PRIMARY]
    boosters = [d for d in earlier if d.kind is DoseKind.BOOSTER]
    required = series_doses_required(primary, catalogue)
    complete = bool(primary) and len(primary) >= required
    if dose.kind is DoseKind.PRIMARY:
        if complete:
            return [
                TooManyDoses(
                    f"the primary series of {required} doses is complete; record a booster instead",
                    series_doses=required,
                )
            ]
        if not primary:
            return []
        previous = primary[-1]
        found: list[DoseRuleViolation] = []
        if not catalogue.may_follow(previous.product, dose.product):
            allowed = sorted(
                c for c in catalogue.products if catalogue.may_follow(previous.product, c)
            )
            found.append(
                MixingNotAllowed(
                    f"{dose.product} may not follow {previous.product} in a primary series",
                    previous_product=previous.product,
                    allowed_products=allowed,
                )
            )
        interval = catalogue.product(previous.product).minimum_interval
        earliest = previous.given_on + interval
        if dose.given_on < earliest:
            found.append(
                IntervalTooShort(
                    f"the earliest date for this dose is {earliest}, "
                    f"{interval.days} days after the "
                    f"dose of {previous.product} on {previous.given_on}",
                    earliest_date=str(earliest),
                    minimum_interval_days=interval.days,
                    previous_dose_on=str(previous.given_on),
                )
            )
        return found
    if not complete:
        return [
            BoosterTooEarly(
                "a booster comes after a complete primary series",
                primary_doses=len(primary),
                series_doses=required,
            )
        ]
    if len(boosters) >= catalogue.max_boosters:
        return [
            TooManyDoses(
                f"at most {catalogue.max_boosters} boosters are given", boosters=len(boosters)
            )
        ]
    found = []
    if not catalogue.product(dose.product).booster:
        found.append(
            MixingNotAllowed(
                f"{dose.product} is not used as a booster",
                allowed_products=catalogue.booster_products(),
            )
        )
    previous = earlier[-1]
    earliest = previous.given_on + timedelta(days=catalogue.booster_min_days_after_series)
    if dose.given_on < earliest:
        found.append(
            BoosterTooEarly(
                f"the earliest date for a booster is {earliest}, "
                f"{catalogue.booster_min_days_after_series} days after {previous.given_on}",
                earliest_date=str(earliest),
            )
        )
    return found


def nth_birthday(date_of_birth: date, years: int) -> date:
    """The day a person turns `years` (1 March for those born on 29 February)."""
    try:
        return date_of_birth.replace(year=date_of_birth.year + years)
    except ValueError:
        return date(date_of_birth.year + years, 3, 1)
