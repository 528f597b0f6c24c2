"""Event data as plain JSON values, for audit output and the integrator feed."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent

from domain.areas import AreaCode
from domain.identity import NationalId, Passport

ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def plain(value: Any) -> Any:
    if isinstance(value, NationalId | Passport | AreaCode):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def event_data(event: DomainEvent) -> dict[str, Any]:
    """The event's own attributes, without the envelope the library adds."""
    return {k: plain(v) for k, v in vars(event).items() if k not in ENVELOPE}


def event_type(event: DomainEvent) -> str:
    """e.g. `VaccinationRecord.DoseAdministered`."""
    return type(event).__qualname__
