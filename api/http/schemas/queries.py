"""Bodies of the audit history and of the service endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ACTOR_EXAMPLE = {"user_id": "nurse-1", "role": "medical_staff", "unit": "79-HCM-001"}


class ActorOut(BaseModel):
    """Who recorded an event. `user_id` is left out of the feed without the identifiers scope."""

    user_id: str | None = Field(default=None, examples=["nurse-1"])
    role: str = Field(examples=["medical_staff"])
    unit: str | None = Field(default=None, examples=["79-HCM-001"])
    checkpoint: str | None = Field(default=None, examples=[None])


class HistoryEntryOut(BaseModel):
    context: str = Field(examples=["immunization"])
    version: int = Field(examples=[2], description="The event's version in its record")
    event_type: str = Field(examples=["VaccinationRecord.DoseAdministered"])
    recorded_at: AwareDatetime
    occurred_at: str | None = Field(
        examples=["2021-08-02T02:00:00+00:00"],
        description="When the recorded fact happened, when it says (a dose, a check)",
    )
    actor: ActorOut | None
    data: dict[str, Any]


class HistoryOut(BaseModel):
    """Every event about a person, in order of recording, and the state known at `as_of`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person": "079190123456",
                    "as_of": None,
                    "entries": [
                        {
                            "context": "population",
                            "version": 1,
                            "event_type": "Citizen.Registered",
                            "recorded_at": "2021-08-01T02:00:00+00:00",
                            "occurred_at": None,
                            "actor": {"user_id": "admin-1", "role": "admin"},
                            "data": {"full_name": "Nguyễn Thị Lan", "sex": "female"},
                        }
                    ],
                    "state": {"citizen": {"full_name": "Nguyễn Thị Lan"}, "vaccination": None},
                }
            ]
        }
    )

    person: str
    as_of: AwareDatetime | None
    entries: list[HistoryEntryOut]
    state: dict[str, Any] = Field(
        description="`citizen`, `vaccination` and `mobility` as they were (null when none)"
    )


class Alive(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok", "not_configured"]] = Field(
        examples=[{"event_store": "ok", "redis": "ok"}]
    )
