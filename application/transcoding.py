"""How vaxreg's value objects are written into stored events (JSON via the library's transcoder)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import date
from enum import Enum
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.areas import AreaCode
from domain.base import Actor
from domain.citizen import CitizenStatus
from domain.doses import (
    AdverseEvent,
    Dose,
    DoseKind,
    InjectionSite,
    Screening,
    ScreeningOutcome,
    Severity,
)
from domain.identity import NationalId, Passport, Sex
from domain.mobility import (
    CheckpointCheck,
    Declaration,
    Symptom,
    TestKind,
    TestOutcome,
    TestResult,
    Transport,
    Trip,
    Verdict,
)
from domain.risk import RiskLevel


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class EnumAsValue(Transcoding):
    """An enum member by its value, under a stable name that survives renaming the class."""

    def __init__(self, enum_type: type[Enum], name: str) -> None:
        self.type = enum_type
        self.name = name
        self._members = {member.value: member for member in enum_type}

    def encode(self, obj: Enum) -> Any:
        return obj.value

    def decode(self, data: Any) -> Enum:
        """The member by a dictionary lookup, cheaper than calling the enum; what is not
        a member's value goes to the enum, which refuses it."""
        try:
            return self._members[data]
        except (KeyError, TypeError):
            member: Enum = self.type(data)
            return member


class DataclassAsDict(Transcoding):
    """A frozen dataclass by its fields; tuple fields come back as tuples, not lists.

    A stored value with every field is decoded without its constructor: it was checked
    when it was made, and a check made stricter since must not make history unreadable.
    One stored before a field was added goes through the constructor, which fills it in.
    """

    def __init__(self, dataclass_type: type[Any], name: str) -> None:
        self.type = dataclass_type
        self.name = name
        hints = typing.get_type_hints(dataclass_type)
        self._names = tuple(f.name for f in dataclasses.fields(dataclass_type))
        self._tuple_fields = {name for name in self._names if _is_tuple(hints[name])}

    def encode(self, obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in self._names}

    def decode(self, data: dict[str, Any]) -> Any:
        for field in self._tuple_fields:
            if field in data:
                data[field] = tuple(data[field])
        if len(data) != len(self._names):
            return self.type(**data)
        obj: Any = object.__new__(self.type)
        object.__setattr__(obj, "__dict__", data)
        return obj


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


ENUMS: dict[str, type[Enum]] = {
    "sex": Sex,
    "citizen_status": CitizenStatus,
    "dose_kind": DoseKind,
    "injection_site": InjectionSite,
    "screening_outcome": ScreeningOutcome,
    "severity": Severity,
    "transport": Transport,
    "symptom": Symptom,
    "test_kind": TestKind,
    "test_outcome": TestOutcome,
    "verdict": Verdict,
    "risk_level": RiskLevel,
}

VALUE_OBJECTS: dict[str, type[Any]] = {
    "actor": Actor,
    "area_code": AreaCode,
    "national_id": NationalId,
    "passport": Passport,
    "dose": Dose,
    "screening": Screening,
    "adverse_event": AdverseEvent,
    "trip": Trip,
    "test_result": TestResult,
    "declaration": Declaration,
    "checkpoint_check": CheckpointCheck,
}


def register_transcodings(transcoder: JSONTranscoder) -> None:
    transcoder.register(DateAsISO())
    for name, enum_type in ENUMS.items():
        transcoder.register(EnumAsValue(enum_type, name))
    for name, dataclass_type in VALUE_OBJECTS.items():
        transcoder.register(DataclassAsDict(dataclass_type, name))
