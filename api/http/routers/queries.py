"""Queries of the read models: eligibility, statistics, arrivals and work lists.

The checkpoint lookups live in :mod:`api.http.hotpath`. Every query takes an optional
``wait_for=POSITION`` (the position a command answered with): the answer then reflects
at least that command, or the request fails with a 503 and ``Retry-After``.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.http.dependencies import API_PREFIX, RegistryDep, registry_of
from api.http.problems import ServiceUnavailable, problem_responses
from api.http.roles import Role
from api.http.security import Principal, ensure_own_record, ensure_unit, require
from domain.areas import AreaCode
from domain.errors import CitizenNotFound, InvalidValue
from domain.identity import parse_person_id
from projections.engine import parse_position
from projections.reader import ReadModels
from projections.runtime import ProjectionRuntime

WAIT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1.0
POSITION_PATTERN = r"^[a-z]+:[0-9]{1,18}(,[a-z]+:[0-9]{1,18})*$"
WAIT_FOR_DESCRIPTION = (
    "Answer only once the read models reflect this position (read-your-writes). A "
    "position names one context, and each context's read models advance at their own "
    "pace: to see a citizen registered and then declared, wait for both positions, "
    "comma-separated (population:7,mobility:12)."
)
_fallback_lock = threading.Lock()


def read_models(request: Request) -> ReadModels:
    """The app's read models; an app built without them reads an embedded set of its own,
    built when first read and caught up on demand by ``wait_for``."""
    found = getattr(request.app.state, "read_models", None)
    if isinstance(found, ReadModels):
        return found
    with _fallback_lock:
        found = getattr(request.app.state, "read_models", None)
        if not isinstance(found, ReadModels):
            runtime = ProjectionRuntime.from_registry(registry_of(request))
            runtime.catch_up()
            found = runtime.read_models
            request.app.state.read_models = found
    return found


ReadModelsDep = Annotated[ReadModels, Depends(read_models)]

WaitFor = Annotated[
    str | None,
    Query(
        pattern=POSITION_PATTERN,
        description=WAIT_FOR_DESCRIPTION,
        examples=["immunization:1042", "population:7,mobility:12"],
    ),
]


async def reach(models: ReadModels, registry: Any, wait_for: str | None) -> None:
    """Wait for `wait_for`; 422 for a position the event store has not reached, 503 on timeout."""
    if wait_for is None:
        return
    wanted = parse_position(wait_for)
    heads = registry.heads()
    for context, number in wanted.items():
        if context not in heads:
            raise InvalidValue(f"unknown context {context!r}", field="wait_for")
        if number > heads[context]:
            raise InvalidValue("the position is ahead of the event store", field="wait_for")
    try:
        await models.wait(wait_for, WAIT_SECONDS)
    except TimeoutError:
        raise ServiceUnavailable(
            "the read models have not reached that position yet",
            retry_after=RETRY_AFTER_SECONDS,
        ) from None


class EligibilityOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "eligible_now": True,
                    "next_dose": 2,
                    "kind": "primary",
                    "earliest": "2021-08-23",
                    "products": ["comirnaty"],
                    "reasons": [],
                }
            ]
        }
    )

    eligible_now: bool
    next_dose: int | None = Field(description="Number of the next dose; null when none is due")
    kind: str | None = Field(examples=["primary"])
    earliest: date | None
    products: list[str]
    reasons: list[str]


class DosesOut(BaseModel):
    """Doses per local day, province and product."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"days": {"2021-08-02": {"079": {"comirnaty": 1520}}}}]}
    )

    days: dict[str, dict[str, dict[str, int]]]


class CoverageRow(BaseModel):
    first: int
    complete: int
    booster: int
    dropout: float = Field(description="(first - complete) / first")


class CoverageOut(BaseModel):
    """People with a first dose, a complete series and a booster per province and age band."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provinces": {
                        "079": {
                            "18-49": {"first": 100, "complete": 80, "booster": 5, "dropout": 0.2}
                        }
                    }
                }
            ]
        }
    )

    provinces: dict[str, dict[str, CoverageRow]]


class CheckpointsOut(BaseModel):
    """Declarations (``declared``) and verdicts per local day and checkpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"days": {"2021-08-02": {"HN-CP-07": {"declared": 40, "pass": 35}}}}]
        }
    )

    days: dict[str, dict[str, dict[str, int]]]


class ArrivalOut(BaseModel):
    citizen: str = Field(description="The traveller's pseudonym")
    origin: str = Field(examples=["079.760"])
    origin_risk_level: int = Field(examples=[3])
    valid_until: str


class ArrivalsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "area": "001",
                    "arrivals": [
                        {
                            "citizen": "b3480d15c397409bbecc24969ed77537",
                            "origin": "079.760",
                            "origin_risk_level": 3,
                            "valid_until": "2021-08-26T02:00:00+00:00",
                        }
                    ],
                }
            ]
        }
    )

    area: str
    arrivals: list[ArrivalOut]


class AwaitingOut(BaseModel):
    citizen: str
    screening: str | None = Field(examples=["eligible"])
    since: str


class DueOut(BaseModel):
    citizen: str
    dose_number: int
    due_on: date
    overdue: bool


class WorkListOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "unit": "79-HCM-001",
                    "awaiting_first_dose": [
                        {
                            "citizen": "b3480d15c397409bbecc24969ed77537",
                            "screening": "eligible",
                            "since": "2021-08-02T02:00:00+00:00",
                        }
                    ],
                    "doses_due": [
                        {
                            "citizen": "0c5e1f0f1d3b4c8e9a7f6e5d4c3b2a19",
                            "dose_number": 2,
                            "due_on": "2021-08-23",
                            "overdue": False,
                        }
                    ],
                }
            ]
        }
    )

    unit: str
    awaiting_first_dose: list[AwaitingOut]
    doses_due: list[DueOut] = Field(description="Next primary doses, the earliest due first")


router = APIRouter(prefix=API_PREFIX, tags=["queries"])
READ = problem_responses(401, 403, 422, 503)
FromDay = Annotated[date, Query(alias="from", description="First local day")]
ToDay = Annotated[date, Query(alias="to", description="Last local day (at most 92 days on)")]


def _days(first: date, last: date) -> None:
    if last < first or (last - first).days >= 92:
        raise InvalidValue("give a range of 1-92 days", field="to")


@router.get(
    "/citizens/{id_number}/eligibility",
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Whether a person may have their next dose now, which, and from when",
)
async def eligibility(
    id_number: str,
    principal: Annotated[
        Principal,
        Depends(require(Role.CITIZEN, Role.MEDICAL_STAFF, Role.AUDITOR, Role.ADMIN)),
    ],
    registry: RegistryDep,
    models: ReadModelsDep,
    wait_for: WaitFor = None,
) -> EligibilityOut:
    person = parse_person_id(id_number)
    ensure_own_record(principal, str(person))
    await reach(models, registry, wait_for)
    found = await models.eligibility(registry.ids.pseudonym(person), registry.clock())
    if found is None:
        raise CitizenNotFound("no eligibility is known for this person")
    return EligibilityOut.model_validate(found)


Statistician = Annotated[Principal, Depends(require(Role.ADMIN, Role.AUDITOR))]


@router.get("/statistics/doses", responses=READ, summary="Doses per day, province and product")
async def doses(
    _: Statistician,
    registry: RegistryDep,
    models: ReadModelsDep,
    first: FromDay,
    last: ToDay,
    wait_for: WaitFor = None,
) -> DosesOut:
    _days(first, last)
    await reach(models, registry, wait_for)
    return DosesOut(days=await models.doses(first, last))


@router.get(
    "/statistics/coverage",
    responses=READ,
    summary="People vaccinated per province and age band, with the dropout rate",
)
async def coverage(
    _: Statistician, registry: RegistryDep, models: ReadModelsDep, wait_for: WaitFor = None
) -> CoverageOut:
    await reach(models, registry, wait_for)
    rows = await models.coverage()
    return CoverageOut.model_validate({"provinces": rows})


@router.get(
    "/statistics/checkpoints",
    responses=READ,
    summary="Declarations and checkpoint verdicts per day and checkpoint",
)
async def checkpoints(
    _: Statistician,
    registry: RegistryDep,
    models: ReadModelsDep,
    first: FromDay,
    last: ToDay,
    wait_for: WaitFor = None,
) -> CheckpointsOut:
    _days(first, last)
    await reach(models, registry, wait_for)
    return CheckpointsOut(days=await models.checkpoints(first, last))


@router.get(
    "/arrivals/{area}",
    responses=READ,
    summary="Travellers declared to an area from areas at risk level 3-4 now",
)
async def arrivals(
    area: str,
    _: Statistician,
    registry: RegistryDep,
    models: ReadModelsDep,
    wait_for: WaitFor = None,
) -> ArrivalsOut:
    code = AreaCode.parse(area)
    if code.ward is not None:
        raise InvalidValue("arrivals are kept per province and district", field="area")
    await reach(models, registry, wait_for)
    found = await models.arrivals(str(code), registry.clock())
    return ArrivalsOut.model_validate({"area": str(code), "arrivals": found})


@router.get(
    "/worklists/{unit}",
    responses=READ,
    summary="A medical unit's people awaiting a first dose and next doses due (or overdue)",
)
async def work_list(
    unit: str,
    principal: Annotated[Principal, Depends(require(Role.MEDICAL_STAFF, Role.ADMIN, Role.AUDITOR))],
    registry: RegistryDep,
    models: ReadModelsDep,
    wait_for: WaitFor = None,
) -> WorkListOut:
    ensure_unit(principal, unit)
    await reach(models, registry, wait_for)
    return WorkListOut.model_validate(await models.work_list(unit, registry.clock()))
