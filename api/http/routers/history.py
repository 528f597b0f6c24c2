"""The auditor's view: a citizen's whole history across the contexts, and past states."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime

from api.http.dependencies import API_PREFIX, RegistryDep
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.queries import HistoryOut
from api.http.security import Principal, require
from domain.identity import parse_person_id

router = APIRouter(prefix=f"{API_PREFIX}/citizens", tags=["audit"])


@router.get(
    "/{id_number}/history",
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A citizen's full history, and the state known at a time",
)
def citizen_history(
    id_number: Annotated[str, Path(min_length=1, max_length=40)],
    _: Annotated[Principal, Depends(require(Role.AUDITOR, Role.ADMIN))],
    registry: RegistryDep,
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="Only what was recorded at or before this time, and the state then"),
    ] = None,
) -> HistoryOut:
    history = registry.audit.history(parse_person_id(id_number), as_of)
    return HistoryOut.model_validate(asdict(history))
