"""The immunization context: vaccination records, the lot register, and status queries.

A dose checks its lot against a copy this process read less than `LOT_CACHE_SECONDS`
ago: lots change rarely (registered once, perhaps recalled), and a dose needs no read of
the lot register of its own. A lot registered or recalled by another process reaches
dose recording here within that time; by this process, at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from application.commands import Outcome, RegistryApplication, Request, Work
from application.ids import IdDeriver
from application.mobility import CitizenLookup
from domain.base import SYSTEM, Actor, Clock
from domain.citizen import Citizen
from domain.clock import local_day, utc
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
from domain.errors import AlreadyRegistered, CitizenMoved, InvalidValue, LotNotFound
from domain.identity import PersonId
from domain.lots import Lot
from domain.status import VaccinationStatus, vaccination_status
from domain.vaccination import VaccinationRecord
from domain.vaccines import CATALOGUE, Catalogue

LOT_CACHE_SECONDS = 1.0
MAX_CACHED_LOTS = 10_000


@dataclass(frozen=True)
class IdentityAtSite:
    """The identity data staff captured at the site, checked against the register."""

    person: PersonId
    full_name: str
    date_of_birth: date


@dataclass(frozen=True)
class DoseGiven:
    product: str
    lot: str
    given_at: datetime
    site: InjectionSite
    kind: DoseKind
    vaccinator: str
    override_reason: str | None = None


class ImmunizationApp(RegistryApplication):
    context = "immunization"
    name = "immunization"

    def __init__(
        self,
        env: Mapping[str, str],
        clock: Clock,
        ids: IdDeriver,
        register: CitizenLookup,
        catalogue: Catalogue = CATALOGUE,
    ) -> None:
        super().__init__(env, clock, ids)
        self.register = register
        self.catalogue = catalogue
        self._lots: dict[uuid.UUID, tuple[Lot | None, float]] = {}
        self._lot_changes = 0

    # Commands: the lot register

    def register_lot(
        self, request: Request, product: str, lot_number: str, expires_on: date
    ) -> Outcome:
        def work() -> Work:
            lot_id = self.ids.lot(product, lot_number)
            if self.find(lot_id, Lot) is not None:
                raise AlreadyRegistered("this lot is already registered", lot=lot_number)
            lot = Lot.register(lot_id, lot_number, product, expires_on, request.actor)
            return [lot], {"lot": lot.lot_number, "product": product}

        payload = {"product": product, "lot": lot_number, "expires_on": expires_on}
        try:
            return self.run(request, "register_lot", payload, work)
        finally:
            self._forget_lot(self.ids.lot(product, lot_number))

    def recall_lot(self, request: Request, product: str, lot_number: str, reason: str) -> Outcome:
        def work() -> Work:
            lot = self.lot(product, lot_number)
            lot.recall(reason, self.clock(), request.actor)
            return [lot], {"lot": lot.lot_number, "product": product}

        payload = {"product": product, "lot": lot_number, "reason": reason}
        try:
            return self.run(request, "recall_lot", payload, work)
        finally:
            self._forget_lot(self.ids.lot(product, lot_number))

    # Commands: the vaccination record

    def register_for_vaccination(
        self, request: Request, identity: IdentityAtSite, priority_group: int | None
    ) -> Outcome:
        unit = _unit_of(request.actor)

        def work() -> Work:
            self._checked_citizen(identity)
            record = self._open_record(identity.person, request.actor)
            record.register(unit, priority_group, request.actor)
            return [record], {"unit": unit}

        payload = {"identity": identity, "priority_group": priority_group}
        return self.run(request, "register_for_vaccination", payload, work)

    def screen(
        self,
        request: Request,
        person: PersonId,
        outcome: ScreeningOutcome,
        postponed_until: date | None = None,
        notes: str = "",
    ) -> Outcome:
        unit = _unit_of(request.actor)

        def work() -> Work:
            self.register.active(person)
            record = self._open_record(person, request.actor)
            screening = Screening(outcome, self.clock(), unit, postponed_until, notes)
            record.screen(screening, request.actor)
            return [record], {"outcome": outcome.value}

        payload = {"person": person, "outcome": outcome, "until": postponed_until, "notes": notes}
        return self.run(request, "screen", payload, work)

    def record_dose(self, request: Request, identity: IdentityAtSite, given: DoseGiven) -> Outcome:
        """Record a dose; one that breaks a rule needs an override reason and is flagged."""
        unit = _unit_of(request.actor)
        dose_id = uuid.uuid4()

        def work() -> Work:
            citizen = self._checked_citizen(identity)
            record = self._open_record(identity.person, request.actor)
            dose = Dose(
                dose_id,
                given.product,
                given.lot.strip().upper(),
                utc(given.given_at, "given_at"),
                unit,
                given.vaccinator,
                given.site,
                given.kind,
                (),
                given.override_reason,
            )
            recorded = record.administer(
                dose, self._context(citizen, record), self._lot_problem(dose), request.actor
            )
            return [record], {
                "dose_id": str(dose_id),
                "dose_number": record.valid_doses.index(recorded) + 1,
                "deviations": list(recorded.deviations),
            }

        payload = {"identity": identity, "given": given}
        return self.run(request, "record_dose", payload, work)

    def correct_dose(
        self,
        request: Request,
        person: PersonId,
        dose_id: uuid.UUID,
        reason: str,
        corrected: DoseGiven,
    ) -> Outcome:
        def work() -> Work:
            citizen = self._unmoved(person)
            record = self._existing_record(person)
            original = next((d for d in record.doses if d.dose_id == dose_id), None)
            unit = original.unit if original else ""
            dose = Dose(
                dose_id,
                corrected.product,
                corrected.lot.strip().upper(),
                utc(corrected.given_at, "given_at"),
                unit,
                corrected.vaccinator,
                corrected.site,
                corrected.kind,
                (),
                corrected.override_reason,
            )
            result = record.correct_dose(
                dose, reason, self._context(citizen, record), self._lot_problem(dose), request.actor
            )
            return [record], {"dose_id": str(dose_id), "deviations": list(result.deviations)}

        payload = {"person": person, "dose_id": dose_id, "reason": reason, "dose": corrected}
        return self.run(request, "correct_dose", payload, work)

    def void_dose(
        self, request: Request, person: PersonId, dose_id: uuid.UUID, reason: str
    ) -> Outcome:
        def work() -> Work:
            record = self._existing_record(person)
            record.void_dose(dose_id, reason, request.actor)
            return [record], {"dose_id": str(dose_id)}

        payload = {"person": person, "dose_id": dose_id, "reason": reason}
        return self.run(request, "void_dose", payload, work)

    def report_adverse_event(
        self,
        request: Request,
        person: PersonId,
        dose_id: uuid.UUID,
        onset: datetime,
        severity: Severity,
        description: str,
    ) -> Outcome:
        def work() -> Work:
            record = self._existing_record(person)
            report = AdverseEvent(dose_id, utc(onset, "onset"), severity, description)
            record.report_adverse_event(report, self.clock(), request.actor)
            return [record], {"dose_id": str(dose_id), "severity": severity.value}

        payload = {
            "person": person,
            "dose_id": dose_id,
            "onset": onset,
            "severity": severity,
            "description": description,
        }
        return self.run(request, "report_adverse_event", payload, work)

    def record_recovery(
        self, request: Request, person: PersonId, positive_test_on: date
    ) -> Outcome:
        def work() -> Work:
            self.register.active(person)
            record = self._open_record(person, request.actor)
            record.record_recovery(positive_test_on, local_day(self.clock()), request.actor)
            return [record], {"positive_test_on": positive_test_on.isoformat()}

        payload = {"person": person, "positive_test_on": positive_test_on}
        return self.run(request, "record_recovery", payload, work)

    def move_record(
        self, request: Request, source: PersonId, target: PersonId, reason: str
    ) -> Outcome:
        """Follow a population record's move: the vaccination history goes with it."""

        def work() -> Work:
            old = self.vaccination_record(source)
            if old is None or old.moved_to == target:
                return [], {"moved": "false"}
            new = self._open_record(target, request.actor)
            new.receive_history(old, reason, request.actor)
            old.move_to(target, reason, request.actor)
            return [old, new], {"moved": "true"}

        payload = {"source": source, "target": target, "reason": reason}
        return self.run(request, "move_record", payload, work)

    # Queries

    def vaccination_record(self, person: PersonId) -> VaccinationRecord | None:
        return self.find(self.ids.vaccination_record(person), VaccinationRecord)

    def status(self, person: PersonId, at: datetime | None = None) -> VaccinationStatus:
        citizen = self.register.current_record(person)
        record = self.vaccination_record(citizen.person) or VaccinationRecord(
            self.ids.vaccination_record(citizen.person), citizen.person, SYSTEM
        )
        return vaccination_status(record, citizen.date_of_birth, at or self.clock(), self.catalogue)

    def lot(self, product: str, lot_number: str) -> Lot:
        lot = self.find(self.ids.lot(product, lot_number), Lot)
        if lot is None:
            raise LotNotFound("no such lot in the lot register", lot=lot_number, product=product)
        return lot

    # Helpers

    def _checked_citizen(self, identity: IdentityAtSite) -> Citizen:
        citizen = self.register.active(identity.person)
        citizen.check_identity(identity.full_name, identity.date_of_birth)
        return citizen

    def _unmoved(self, person: PersonId) -> Citizen:
        """Corrections may concern a deceased person's record, but not one that moved."""
        citizen = self.register.citizen(person)
        if citizen.moved_to is not None:
            raise CitizenMoved(
                f"this record was moved to {citizen.moved_to}", moved_to=str(citizen.moved_to)
            )
        return citizen

    def _open_record(self, person: PersonId, actor: Actor) -> VaccinationRecord:
        record = self.vaccination_record(person)
        return record or VaccinationRecord(self.ids.vaccination_record(person), person, actor)

    def _existing_record(self, person: PersonId) -> VaccinationRecord:
        self._unmoved(person)
        record = self.vaccination_record(person)
        if record is None:
            raise InvalidValue("this person has no vaccination record yet")
        return record

    def _context(self, citizen: Citizen, record: VaccinationRecord) -> DoseContext:
        return DoseContext(
            citizen.date_of_birth,
            record.screenings,
            record.adverse_events,
            self.catalogue,
            self.clock(),
        )

    def _lot_problem(self, dose: Dose) -> str | None:
        self.catalogue.product(dose.product)
        lot = self._recent_lot(self.ids.lot(dose.product, dose.lot))
        if lot is None:
            return f"lot {dose.lot} of {dose.product} is not in the lot register"
        return lot.usable_problem(dose.product, dose.given_at, dose.given_on)

    def _recent_lot(self, lot_id: uuid.UUID) -> Lot | None:
        """The lot as read less than `LOT_CACHE_SECONDS` ago (None: not registered)."""
        now = time.monotonic()
        cached = self._lots.get(lot_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        changes = self._lot_changes
        lot = self.find(lot_id, Lot)
        if changes == self._lot_changes:
            if len(self._lots) >= MAX_CACHED_LOTS:
                self._lots.clear()
            self._lots[lot_id] = (lot, now + LOT_CACHE_SECONDS)
        return lot

    def _forget_lot(self, lot_id: uuid.UUID) -> None:
        """After this process changed a lot: a read begun before is not kept either."""
        self._lot_changes += 1
        self._lots.pop(lot_id, None)


def _unit_of(actor: Actor) -> str:
    if not actor.unit:
        raise InvalidValue("this is recorded by staff of a medical unit")
    return actor.unit
