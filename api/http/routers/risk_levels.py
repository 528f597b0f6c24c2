"""Epidemic risk levels of provinces and districts (Resolution 128/NQ-CP)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.http.dependencies import API_PREFIX, Caller, RegistryDep, accepted, caller
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.commands import Accepted, RiskAssessed, RiskLevelIn
from domain.areas import AreaCode

router = APIRouter(prefix=f"{API_PREFIX}/risk-levels", tags=["risk levels"])


@router.post(
    "",
    status_code=201,
    responses=problem_responses(401, 403, 409, 422, 503),
    summary="Set an area's risk level from a time on",
    response_model=Accepted[RiskAssessed],
)
def assess_risk(
    body: RiskLevelIn,
    admin: Annotated[Caller, Depends(caller(Role.ADMIN))],
    registry: RegistryDep,
) -> Response:
    outcome = registry.mobility.assess_risk(
        admin.request, AreaCode.parse(body.area), body.level, body.effective_from, body.reason
    )
    return accepted(outcome, Accepted[RiskAssessed])
