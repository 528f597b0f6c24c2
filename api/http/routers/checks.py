"""Checkpoint decisions: an officer records what was decided about a traveller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.http.dependencies import API_PREFIX, Caller, RegistryDep, accepted, caller
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.commands import Accepted, CheckIn, CheckRecorded
from domain.identity import parse_person_id

router = APIRouter(prefix=f"{API_PREFIX}/checks", tags=["mobility"])


@router.post(
    "",
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
    summary="Record a checkpoint decision (at the officer's checkpoint)",
    response_model=Accepted[CheckRecorded],
)
def record_check(
    body: CheckIn,
    officer: Annotated[Caller, Depends(caller(Role.CHECKPOINT_OFFICER))],
    registry: RegistryDep,
) -> Response:
    """The traveller must be in the population register; a check of an unknown ID is a 404."""
    person = parse_person_id(body.id_number)
    registry.population.current_record(person)
    outcome = registry.mobility.record_check(
        officer.request,
        person,
        body.verdict,
        tuple(body.reasons),
        body.declaration_id,
    )
    return accepted(outcome, Accepted[CheckRecorded])
