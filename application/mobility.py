"""The mobility context: health declarations, checkpoint decisions and area risk levels."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from application.commands import Outcome, RegistryApplication, Request, Work
from application.ids import IdDeriver
from application.qr import QrTokens
from domain.areas import AreaCode
from domain.base import Actor, Clock
from domain.citizen import Citizen
from domain.clock import utc
from domain.errors import DeclarationNotFound, InvalidValue
from domain.identity import PersonId
from domain.mobility import (
    DEFAULT_VALIDITY,
    CheckpointCheck,
    Declaration,
    MobilityRecord,
    Symptom,
    TestResult,
    Trip,
    Verdict,
)
from domain.risk import AreaRisk, RiskLevel


class CitizenLookup(Protocol):
    """What other contexts read from the population register."""

    def citizen(self, person: PersonId) -> Citizen: ...

    def active(self, person: PersonId) -> Citizen: ...

    def current_record(self, person: PersonId) -> Citizen: ...


@dataclass(frozen=True)
class HealthStatement:
    """What a traveller declares about their health."""

    symptoms: tuple[Symptom, ...] = ()
    contact_with_confirmed_case: bool = False
    stayed_in_high_risk_area: bool = False
    test: TestResult | None = None


class MobilityApp(RegistryApplication):
    context = "mobility"
    name = "mobility"

    def __init__(
        self,
        env: Mapping[str, str],
        clock: Clock,
        ids: IdDeriver,
        register: CitizenLookup,
        qr_tokens: QrTokens,
        validity: timedelta = DEFAULT_VALIDITY,
    ) -> None:
        super().__init__(env, clock, ids)
        self.register = register
        self.qr_tokens = qr_tokens
        self.validity = validity

    # Commands

    def declare_health(
        self, request: Request, person: PersonId, trip: Trip, health: HealthStatement
    ) -> Outcome:
        """A citizen declares for themself, or an officer for a traveller at the checkpoint."""
        declaration_id = uuid.uuid4()

        def work() -> Work:
            self.register.active(person)
            now = self.clock()
            test = health.test
            if test is not None:
                test = replace(test, sampled_at=utc(test.sampled_at, "sampled_at"))
            declaration = Declaration(
                declaration_id=declaration_id,
                trip=trip,
                symptoms=health.symptoms,
                contact_with_confirmed_case=health.contact_with_confirmed_case,
                stayed_in_high_risk_area=health.stayed_in_high_risk_area,
                test=test,
                declared_at=now,
                valid_until=now + self.validity,
            )
            record = self._open_record(person, request.actor)
            record.declare(declaration, request.actor)
            return [record], {
                "declaration_id": str(declaration_id),
                "valid_until": declaration.valid_until.isoformat(),
                "qr_token": self.qr_tokens.issue(declaration_id, declaration.valid_until),
            }

        payload = {"person": person, "trip": trip, "health": health}
        return self.run(request, "declare_health", payload, work)

    def record_check(
        self,
        request: Request,
        person: PersonId,
        verdict: Verdict,
        reasons: tuple[str, ...],
        declaration_id: uuid.UUID | None,
    ) -> Outcome:
        """An officer's decision at a checkpoint; looking a traveller up records nothing."""
        checkpoint = request.actor.checkpoint
        if checkpoint is None:
            raise InvalidValue("only an officer at a checkpoint records a check")

        def work() -> Work:
            self.register.citizen(person)
            record = self._open_record(person, request.actor)
            check = CheckpointCheck(checkpoint, self.clock(), verdict, reasons, declaration_id)
            record.record_check(check, request.actor)
            return [record], {"checkpoint": checkpoint, "verdict": verdict.value}

        payload = {
            "person": person,
            "verdict": verdict,
            "reasons": reasons,
            "declaration_id": declaration_id,
        }
        return self.run(request, "record_check", payload, work)

    def assess_risk(
        self,
        request: Request,
        area: AreaCode,
        level: RiskLevel,
        effective_from: datetime,
        reason: str,
    ) -> Outcome:
        if area.ward is not None:
            raise InvalidValue("risk levels are set for provinces and districts")

        def work() -> Work:
            effective = utc(effective_from, "effective_from")
            risk = self.find(self.ids.area_risk(area), AreaRisk)
            if risk is None:
                risk = AreaRisk.assess(
                    self.ids.area_risk(area), area, level, effective, reason, request.actor
                )
            else:
                risk.reassess(level, effective, reason, request.actor)
            return [risk], {"area": str(area), "level": level.value}

        payload = {"area": area, "level": level, "effective_from": effective_from, "reason": reason}
        return self.run(request, "assess_risk", payload, work)

    # Queries

    def mobility_record(self, person: PersonId) -> MobilityRecord | None:
        return self.find(self.ids.mobility_record(person), MobilityRecord)

    def declaration(self, person: PersonId, declaration_id: uuid.UUID) -> Declaration:
        record = self.mobility_record(person)
        if record is None or declaration_id not in record.declarations:
            raise DeclarationNotFound("no such declaration", declaration_id=str(declaration_id))
        return record.declarations[declaration_id]

    def area_risk(self, area: AreaCode) -> AreaRisk | None:
        return self.find(self.ids.area_risk(area), AreaRisk)

    def risk_level(self, area: AreaCode, at: datetime) -> RiskLevel | None:
        """The level in force: the district's own if it has one, else its province's."""
        for candidate in (area, AreaCode(area.province)) if area.district else (area,):
            risk = self.area_risk(AreaCode(candidate.province, candidate.district))
            level = risk.level_at(at) if risk else None
            if level is not None:
                return level
        return None

    def _open_record(self, person: PersonId, actor: Actor) -> MobilityRecord:
        record = self.mobility_record(person)
        return record or MobilityRecord(self.ids.mobility_record(person), person, actor)
