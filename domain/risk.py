"""Epidemic risk levels of areas (Resolution 128/NQ-CP), announced ahead of their effective time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from uuid import UUID

from eventsourcing.domain import event

from domain.areas import AreaCode
from domain.base import Actor, RegistryAggregate
from domain.errors import InvalidValue


class RiskLevel(Enum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4

    @property
    def colour(self) -> str:
        return {1: "green", 2: "yellow", 3: "orange", 4: "red"}[self.value]


@dataclass(frozen=True)
class LevelPeriod:
    level: RiskLevel
    effective_from: datetime
    reason: str


class AreaRisk(RegistryAggregate):
    """The risk level history of one province or district.

    Create it with `AreaRisk.assess(...)`, which checks the reason first.
    """

    TOPIC = "vaxreg.mobility:AreaRisk"

    class Created(RegistryAggregate.Created):
        TOPIC = "vaxreg.mobility:AreaRisk.Created"

    @event("Assessed", topic="vaxreg.mobility:AreaRisk.Assessed")
    def __init__(
        self,
        id: UUID,
        area: AreaCode,
        level: RiskLevel,
        effective_from: datetime,
        reason: str,
        actor: Actor,
    ) -> None:
        self.area = area
        self.periods: list[LevelPeriod] = [LevelPeriod(level, effective_from, reason)]

    @classmethod
    def assess(
        cls,
        id: UUID,
        area: AreaCode,
        level: RiskLevel,
        effective_from: datetime,
        reason: str,
        actor: Actor,
    ) -> AreaRisk:
        _check_reason(reason)
        return cls(id, area, level, effective_from, reason, actor)

    def reassess(
        self, level: RiskLevel, effective_from: datetime, reason: str, actor: Actor
    ) -> None:
        _check_reason(reason)
        self._level_changed(level, effective_from, reason, actor)

    @event("LevelChanged", topic="vaxreg.mobility:AreaRisk.LevelChanged")
    def _level_changed(
        self, level: RiskLevel, effective_from: datetime, reason: str, actor: Actor
    ) -> None:
        self.periods.append(LevelPeriod(level, effective_from, reason))
        self.periods.sort(key=lambda p: p.effective_from)

    def level_at(self, moment: datetime) -> RiskLevel | None:
        current = None
        for period in self.periods:
            if period.effective_from <= moment:
                current = period.level
        return current


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise InvalidValue("a risk level needs a reason")
