"""Value objects of the vaccination record: doses, screenings, adverse events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from uuid import UUID

from domain.clock import local_day


class DoseKind(Enum):
    PRIMARY = "primary"
    BOOSTER = "booster"


class InjectionSite(Enum):
    LEFT_ARM = "left_arm"
    RIGHT_ARM = "right_arm"
    LEFT_THIGH = "left_thigh"
    RIGHT_THIGH = "right_thigh"


class ScreeningOutcome(Enum):
    ELIGIBLE = "eligible"
    POSTPONED = "postponed"
    CONTRAINDICATED = "contraindicated"
    REFER_TO_HOSPITAL = "refer_to_hospital"


class Severity(Enum):
    MILD = "mild"
    SEVERE = "severe"


@dataclass(frozen=True)
class Dose:
    """One injection as given. `deviations` lists the rule codes it was recorded in spite of."""

    dose_id: UUID
    product: str
    lot: str
    given_at: datetime
    unit: str
    vaccinator: str
    site: InjectionSite
    kind: DoseKind
    deviations: tuple[str, ...] = ()
    override_reason: str | None = None

    @property
    def given_on(self) -> date:
        return local_day(self.given_at)


@dataclass(frozen=True)
class Screening:
    outcome: ScreeningOutcome
    screened_at: datetime
    unit: str
    postponed_until: date | None = None
    notes: str = ""


@dataclass(frozen=True)
class AdverseEvent:
    dose_id: UUID
    onset: datetime
    severity: Severity
    description: str
