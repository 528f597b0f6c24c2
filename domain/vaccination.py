"""A person's vaccination record: registrations, screenings, doses, corrections, reactions."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.base import Actor, RegistryAggregate
from domain.dose_rules import DoseContext, violations
from domain.doses import AdverseEvent, Dose, Screening, ScreeningOutcome
from domain.errors import CitizenMoved, DoseNotFound, DoseRuleViolation, InvalidValue, LotUnusable
from domain.identity import PersonId

MAX_PRIORITY_GROUP = 16
MAX_TEXT = 2000


class VaccinationRecord(RegistryAggregate):
    TOPIC = "vaxreg.immunization:VaccinationRecord"

    class Created(RegistryAggregate.Created):
        TOPIC = "vaxreg.immunization:VaccinationRecord.Created"

    @event("Opened", topic="vaxreg.immunization:VaccinationRecord.Opened")
    def __init__(self, id: UUID, person: PersonId, actor: Actor) -> None:
        self.person = person
        self.registrations: list[tuple[str, int | None]] = []
        self.screenings: list[Screening] = []
        self.doses: list[Dose] = []
        self.voided: set[UUID] = set()
        self.adverse_events: list[AdverseEvent] = []
        self.recovered_on: date | None = None
        self.moved_to: PersonId | None = None
        self.received_from: list[PersonId] = []

    # Commands

    def register(self, unit: str, priority_group: int | None, actor: Actor) -> None:
        if priority_group is not None and not 1 <= priority_group <= MAX_PRIORITY_GROUP:
            raise InvalidValue(f"priority groups are 1-{MAX_PRIORITY_GROUP}")
        self._registered(unit, priority_group, actor)

    def screen(self, screening: Screening, actor: Actor) -> None:
        postponed = screening.outcome is ScreeningOutcome.POSTPONED
        if postponed != (screening.postponed_until is not None):
            raise InvalidValue("a postponement, and only a postponement, gives a date until when")
        _check_text(screening.notes)
        self._screened(screening, actor)

    def administer(
        self, dose: Dose, ctx: DoseContext, lot_problem: str | None, actor: Actor
    ) -> Dose:
        """Record a dose; a rule it breaks is refused unless the dose carries an override reason."""
        if any(d.dose_id == dose.dose_id for d in self.doses):
            raise InvalidValue("this dose id is already recorded")
        found, _ = self._violations_with(dose, ctx)
        dose = _accept_or_raise(dose, found + _lot_violation(lot_problem))
        self._administered(dose, actor)
        return dose

    def correct_dose(
        self,
        corrected: Dose,
        reason: str,
        ctx: DoseContext,
        lot_problem: str | None,
        actor: Actor,
    ) -> Dose:
        """Replace a dose's fields; the whole history is checked again against the catalogue."""
        _check_reason(reason)
        original = self._dose(corrected.dose_id)
        found, carried = self._violations_with(corrected, ctx)
        if carried and not found and corrected.override_reason is None:
            corrected = replace(corrected, override_reason=original.override_reason)
        corrected = _accept_or_raise(corrected, found + _lot_violation(lot_problem), carried)
        self._dose_corrected(corrected, reason, actor)
        return corrected

    def void_dose(self, dose_id: UUID, reason: str, actor: Actor) -> None:
        self._dose(dose_id)
        _check_reason(reason)
        self._dose_voided(dose_id, reason, actor)

    def report_adverse_event(self, report: AdverseEvent, now: datetime, actor: Actor) -> None:
        dose = self._dose(report.dose_id)
        if not dose.given_at <= report.onset <= now:
            raise InvalidValue(
                "the onset lies between the dose and now", given_at=dose.given_at.isoformat()
            )
        _check_text(report.description)
        self._adverse_event_reported(report, actor)

    def record_recovery(self, positive_test_on: date, today: date, actor: Actor) -> None:
        if positive_test_on > today:
            raise InvalidValue("the positive test is dated in the future")
        self._recovered(positive_test_on, actor)

    def move_to(self, target: PersonId, reason: str, actor: Actor) -> None:
        """The person's ID number was wrong: the history now lives under `target`."""
        _check_reason(reason)
        if self.moved_to is not None:
            raise CitizenMoved(
                f"this record was moved to {self.moved_to}", moved_to=str(self.moved_to)
            )
        self._moved_to(target, reason, actor)

    def receive_history(self, source: VaccinationRecord, reason: str, actor: Actor) -> None:
        """Take in the valid doses and findings of a record moved into this one."""
        _check_reason(reason)
        known = {d.dose_id for d in self.doses}
        self._history_received(
            source.person,
            tuple(d for d in source.valid_doses if d.dose_id not in known),
            tuple(source.screenings),
            tuple(source.adverse_events),
            source.recovered_on,
            reason,
            actor,
        )

    # Queries

    @property
    def valid_doses(self) -> list[Dose]:
        return sorted(
            (d for d in self.doses if d.dose_id not in self.voided), key=lambda d: d.given_at
        )

    def _violations_with(
        self, changed: Dose, ctx: DoseContext
    ) -> tuple[list[DoseRuleViolation], tuple[str, ...]]:
        """The rules the history breaks with `changed` in it that it did not break before,
        and the deviations a corrected dose was recorded with that it still has.

        Each dose is checked against the doses given before it. A violation is new when the
        dose did not break that rule before the change and, for the other doses, it is not
        among the deviations they were recorded with.
        """
        before = _broken_codes(self.valid_doses, ctx)
        others = [d for d in self.valid_doses if d.dose_id != changed.dose_id]
        history = sorted([*others, changed], key=lambda d: d.given_at)
        found: list[DoseRuleViolation] = []
        carried: tuple[str, ...] = ()
        for position, dose in enumerate(history):
            broken = violations(dose, history[:position], ctx)
            known = before.get(dose.dose_id, set())
            if dose.dose_id == changed.dose_id:
                recorded = self._dose(dose.dose_id).deviations if dose.dose_id in before else ()
                carried = tuple(v.code for v in broken if v.code in recorded)
            else:
                known |= set(dose.deviations)
            found += [v for v in broken if v.code not in known]
        return found, carried

    def _dose(self, dose_id: UUID) -> Dose:
        for dose in self.doses:
            if dose.dose_id == dose_id and dose_id not in self.voided:
                return dose
        raise DoseNotFound("no such dose on this record (or it was voided)", dose_id=str(dose_id))

    # Events

    @event("Registered", topic="vaxreg.immunization:VaccinationRecord.Registered")
    def _registered(self, unit: str, priority_group: int | None, actor: Actor) -> None:
        self.registrations.append((unit, priority_group))

    @event("Screened", topic="vaxreg.immunization:VaccinationRecord.Screened")
    def _screened(self, screening: Screening, actor: Actor) -> None:
        self.screenings.append(screening)
        self.screenings.sort(key=lambda s: s.screened_at)

    @event("DoseAdministered", topic="vaxreg.immunization:VaccinationRecord.DoseAdministered")
    def _administered(self, dose: Dose, actor: Actor) -> None:
        self.doses.append(dose)

    @event("DoseCorrected", topic="vaxreg.immunization:VaccinationRecord.DoseCorrected")
    def _dose_corrected(self, dose: Dose, reason: str, actor: Actor) -> None:
        self.doses = [dose if d.dose_id == dose.dose_id else d for d in self.doses]

    @event("DoseVoided", topic="vaxreg.immunization:VaccinationRecord.DoseVoided")
    def _dose_voided(self, dose_id: UUID, reason: str, actor: Actor) -> None:
        self.voided.add(dose_id)

    @event(
        "AdverseEventReported", topic="vaxreg.immunization:VaccinationRecord.AdverseEventReported"
    )
    def _adverse_event_reported(self, report: AdverseEvent, actor: Actor) -> None:
        self.adverse_events.append(report)

    @event("RecoveryRecorded", topic="vaxreg.immunization:VaccinationRecord.RecoveryRecorded")
    def _recovered(self, positive_test_on: date, actor: Actor) -> None:
        self.recovered_on = max(positive_test_on, self.recovered_on or positive_test_on)

    @event("MovedTo", topic="vaxreg.immunization:VaccinationRecord.MovedTo")
    def _moved_to(self, target: PersonId, reason: str, actor: Actor) -> None:
        self.moved_to = target

    @event("HistoryReceived", topic="vaxreg.immunization:VaccinationRecord.HistoryReceived")
    def _history_received(
        self,
        source: PersonId,
        doses: tuple[Dose, ...],
        screenings: tuple[Screening, ...],
        adverse_events: tuple[AdverseEvent, ...],
        recovered_on: date | None,
        reason: str,
        actor: Actor,
    ) -> None:
        self.received_from.append(source)
        self.doses.extend(doses)
        self.screenings = sorted([*self.screenings, *screenings], key=lambda s: s.screened_at)
        self.adverse_events.extend(adverse_events)
        if recovered_on is not None:
            self.recovered_on = max(recovered_on, self.recovered_on or recovered_on)


def _broken_codes(doses: list[Dose], ctx: DoseContext) -> dict[UUID, set[str]]:
    history = sorted(doses, key=lambda d: d.given_at)
    return {
        dose.dose_id: {v.code for v in violations(dose, history[:position], ctx)}
        for position, dose in enumerate(history)
    }


def _lot_violation(problem: str | None) -> list[DoseRuleViolation]:
    return [LotUnusable(problem)] if problem else []


def _accept_or_raise(
    dose: Dose, found: list[DoseRuleViolation], carried: tuple[str, ...] = ()
) -> Dose:
    """The dose with its deviations, or the first violation raised when it has no override.

    `carried` are deviations a corrected dose already had; they stay flagged.
    """
    if found and (dose.override_reason is None or not dose.override_reason.strip()):
        first = found[0]
        first.details.setdefault("violations", [v.code for v in found])
        raise first
    deviations = (*carried, *(v.code for v in found))
    return replace(
        dose, deviations=deviations, override_reason=dose.override_reason if deviations else None
    )


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise InvalidValue("a reason is required", field="reason")
    _check_text(reason)


def _check_text(text: str) -> None:
    if len(text) > MAX_TEXT:
        raise InvalidValue(f"free text is limited to {MAX_TEXT} characters")
