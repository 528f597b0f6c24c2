"""An auditor's view: a person's whole history across the three contexts, and past states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.domain import DomainEvent

from application.commands import RegistryApplication
from application.immunization import ImmunizationApp
from application.mobility import MobilityApp
from application.plain import event_data, event_type, plain
from application.population import PopulationApp
from domain.citizen import Citizen
from domain.identity import PersonId
from domain.mobility import MobilityRecord
from domain.status import vaccination_status
from domain.vaccination import VaccinationRecord

T = TypeVar("T")

OCCURRED_AT_FIELDS = (
    ("dose", "given_at"),
    ("screening", "screened_at"),
    ("declaration", "declared_at"),
    ("check", "checked_at"),
    ("report", "onset"),
    (None, "died_on"),
    (None, "positive_test_on"),
)


@dataclass(frozen=True)
class HistoryEntry:
    context: str
    version: int
    event_type: str
    recorded_at: datetime
    occurred_at: str | None
    actor: dict[str, Any] | None
    data: dict[str, Any]


@dataclass(frozen=True)
class History:
    person: str
    as_of: datetime | None
    entries: list[HistoryEntry]
    state: dict[str, Any]


class Audit:
    def __init__(
        self, population: PopulationApp, mobility: MobilityApp, immunization: ImmunizationApp
    ) -> None:
        self.population = population
        self.mobility = mobility
        self.immunization = immunization

    def history(self, person: PersonId, as_of: datetime | None = None) -> History:
        """Every event about `person` in order of recording, and the state known at `as_of`."""
        citizen = self.population.citizen(person)
        ids = self.population.ids
        streams: list[tuple[RegistryApplication, UUID]] = [
            (self.population, ids.citizen(person)),
            (self.mobility, ids.mobility_record(person)),
            (self.immunization, ids.vaccination_record(person)),
        ]
        entries = [
            _entry(app.context, event)
            for app, aggregate_id in streams
            for event in _events(app, aggregate_id)
            if as_of is None or event.timestamp <= as_of
        ]
        entries.sort(key=lambda e: e.recorded_at)
        moment = as_of or self.population.clock()
        state = {
            "citizen": self._citizen_state(citizen, moment),
            "vaccination": self._vaccination_state(person, moment),
            "mobility": self._mobility_state(person, moment),
        }
        return History(str(person), as_of, entries, state)

    def _citizen_state(self, citizen: Citizen, moment: datetime) -> dict[str, Any] | None:
        past = _as_of(self.population, citizen.id, moment, Citizen)
        if past is None:
            return None
        return _plain_dict(
            {
                "person": past.person,
                "full_name": past.full_name,
                "date_of_birth": past.date_of_birth,
                "sex": past.sex,
                "residence": past.residence,
                "phone": past.phone,
                "status": past.status,
                "died_on": past.died_on,
                "moved_to": past.moved_to,
                "merged_from": past.merged_from,
            }
        )

    def _vaccination_state(self, person: PersonId, moment: datetime) -> dict[str, Any] | None:
        record_id = self.population.ids.vaccination_record(person)
        record = _as_of(self.immunization, record_id, moment, VaccinationRecord)
        past_citizen = _as_of(self.population, self.population.ids.citizen(person), moment, Citizen)
        if record is None or past_citizen is None:
            return None
        status = vaccination_status(
            record, past_citizen.date_of_birth, moment, self.immunization.catalogue
        )
        return _plain_dict(
            {
                "status": status,
                "doses": record.valid_doses,
                "voided": sorted(str(d) for d in record.voided),
                "screenings": record.screenings,
                "adverse_events": record.adverse_events,
                "recovered_on": record.recovered_on,
            }
        )

    def _mobility_state(self, person: PersonId, moment: datetime) -> dict[str, Any] | None:
        record_id = self.population.ids.mobility_record(person)
        record = _as_of(self.mobility, record_id, moment, MobilityRecord)
        if record is None:
            return None
        return _plain_dict(
            {
                "current_declaration": record.current_declaration(moment),
                "declarations": len(record.declarations),
                "checks": record.checks,
            }
        )


def _as_of(
    app: RegistryApplication, aggregate_id: UUID, moment: datetime, kind: type[T]
) -> T | None:
    """The aggregate as it was after the last event recorded at or before `moment`."""
    version = None
    for event in _events(app, aggregate_id):
        if event.timestamp > moment:
            break
        version = event.originator_version
    if version is None:
        return None
    aggregate: object = app.repository.get(aggregate_id, version=version)
    if not isinstance(aggregate, kind):
        raise TypeError(f"{aggregate_id} is not a {kind.__name__}")
    return aggregate


def _events(app: RegistryApplication, aggregate_id: UUID) -> list[DomainEvent]:
    return [cast(DomainEvent, e) for e in app.events.get(aggregate_id)]


def _plain_dict(values: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = plain(values)
    return result


def _entry(context: str, event: DomainEvent) -> HistoryEntry:
    data = event_data(event)
    actor = data.pop("actor", None)
    return HistoryEntry(
        context=context,
        version=event.originator_version,
        event_type=event_type(event),
        recorded_at=event.timestamp,
        occurred_at=_occurred_at(data),
        actor=actor,
        data=data,
    )


def _occurred_at(data: dict[str, Any]) -> str | None:
    for container, field in OCCURRED_AT_FIELDS:
        source = data.get(container) if container else data
        if isinstance(source, dict) and source.get(field):
            return str(source[field])
    return None
