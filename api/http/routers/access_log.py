"""The access log for auditors: who read a person's data, or what a reader read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.http.dependencies import API_PREFIX, RegistryDep
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.security import Principal, require
from application.access_log import AccessLog
from domain.errors import InvalidValue
from domain.identity import parse_person_id

router = APIRouter(prefix=f"{API_PREFIX}/access-log", tags=["audit"])

MAX_LIMIT = 1000


class ReaderOut(BaseModel):
    user_id: str = Field(description="A citizen reader appears under their pseudonym")
    role: str = Field(examples=["auditor"])
    unit: str | None = None
    checkpoint: str | None = None


class AccessOut(BaseModel):
    at: AwareDatetime
    reader: ReaderOut
    what: str = Field(examples=["history"], description="history, eligibility, checkpoint_lookup")
    subject: str = Field(description="The pseudonym of the person whose data was read")


class AccessLogOut(BaseModel):
    entries: list[AccessOut]


def get_access_log(request: Request) -> AccessLog:
    log = getattr(request.app.state, "access_log", None)
    if not isinstance(log, AccessLog):
        raise RuntimeError("app.state.access_log is not set (see install_access_log)")
    return log


@router.get(
    "",
    responses=problem_responses(401, 403, 422, 503),
    summary="Reads of a person's data (by ID number or pseudonym), or by a reader",
)
async def read_access_log(
    _: Annotated[Principal, Depends(require(Role.AUDITOR))],
    registry: RegistryDep,
    log: Annotated[AccessLog, Depends(get_access_log)],
    subject: Annotated[
        str | None, Query(max_length=40, description="The person's ID number")
    ] = None,
    pseudonym: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
    reader: Annotated[
        str | None,
        Query(max_length=200, description="A reader's user id; lists checkpoint lookups too"),
    ] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> AccessLogOut:
    """Exactly one of `subject`, `pseudonym` and `reader`. A person's reads are of their
    record and history; checkpoint lookups are listed per reader (the officer)."""
    if sum(v is not None for v in (subject, pseudonym, reader)) != 1:
        raise InvalidValue("give exactly one of subject, pseudonym and reader")
    if reader is not None:
        records = await run_in_threadpool(log.reads_by, reader, since, until, limit)
    else:
        key = pseudonym or registry.ids.pseudonym(parse_person_id(subject or ""))
        records = await run_in_threadpool(log.reads_of, key, since, until, limit)
    return AccessLogOut.model_validate({"entries": [r.as_dict() for r in records]})
