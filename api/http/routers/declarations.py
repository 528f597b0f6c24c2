"""Health declarations: a citizen's own before a trip, or a traveller's taken at a checkpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.http.dependencies import API_PREFIX, Caller, RegistryDep, accepted, caller
from api.http.problems import problem_responses
from api.http.ratelimit import RateLimiter, get_rate_limiter, rate_limit
from api.http.roles import Role
from api.http.schemas.commands import Accepted, DeclarationIn, DeclarationMade
from api.http.security import ensure_checkpoint, ensure_own_record
from application.mobility import HealthStatement
from domain.areas import AreaCode
from domain.identity import parse_person_id
from domain.mobility import TestResult, Trip

router = APIRouter(prefix=f"{API_PREFIX}/declarations", tags=["mobility"])

CITIZEN_LIMIT = rate_limit(20, timedelta(minutes=1), name="declarations")


@router.post(
    "",
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
    summary="Declare health before a trip; the answer carries the QR token",
    response_model=Accepted[DeclarationMade],
)
def declare_health(
    body: DeclarationIn,
    who: Annotated[Caller, Depends(caller(Role.CITIZEN, Role.CHECKPOINT_OFFICER))],
    registry: RegistryDep,
    request: Request,
    limiter: Annotated[RateLimiter, Depends(get_rate_limiter)],
) -> Response:
    """A citizen declares for their own ID number (rate limited); an officer declares for a
    traveller at their own checkpoint, which is filled in when the body leaves it out."""
    person = parse_person_id(body.id_number)
    principal = who.principal
    checkpoint = body.trip.checkpoint
    if principal.role is Role.CITIZEN:
        ensure_own_record(principal, str(person))
        CITIZEN_LIMIT(request, principal, limiter)
    else:
        checkpoint = checkpoint or principal.checkpoint
        ensure_checkpoint(principal, checkpoint or "")
    trip = Trip(
        origin=AreaCode.parse(body.trip.origin),
        destination=AreaCode.parse(body.trip.destination),
        travel_date=body.trip.travel_date,
        transport=body.trip.transport,
        vehicle_plate=body.trip.vehicle_plate,
        checkpoint=checkpoint,
    )
    test = body.test
    health = HealthStatement(
        symptoms=tuple(body.symptoms),
        contact_with_confirmed_case=body.contact_with_confirmed_case,
        stayed_in_high_risk_area=body.stayed_in_high_risk_area,
        test=TestResult(test.kind, test.outcome, test.sampled_at) if test else None,
    )
    outcome = registry.mobility.declare_health(who.request, person, trip, health)
    return accepted(outcome, Accepted[DeclarationMade])
