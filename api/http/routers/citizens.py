"""The population register: registering citizens and correcting their records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from api.http.dependencies import API_PREFIX, Caller, RegistryDep, accepted, caller
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.commands import (
    Accepted,
    CitizenChanged,
    CitizenIn,
    ContactIn,
    CorrectionIn,
    DeathIn,
    MoveIn,
    RecordMoved,
    ResidenceIn,
)
from api.http.security import ensure_own_record
from application.commands import Outcome
from application.corrections import move_person
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.identity import parse_person_id

router = APIRouter(prefix=f"{API_PREFIX}/citizens", tags=["citizens"])

Admin = Annotated[Caller, Depends(caller(Role.ADMIN))]
IdNumberPath = Annotated[
    str, Path(min_length=1, max_length=40, description="ID number, or NATIONALITY:PASSPORT")
]
ERRORS = problem_responses(401, 403, 404, 409, 422, 503)


def _changed(outcome: Outcome) -> Response:
    return accepted(outcome, Accepted[CitizenChanged])


@router.post(
    "",
    status_code=201,
    responses=ERRORS,
    summary="Register a citizen",
    response_model=Accepted[CitizenChanged],
)
def register_citizen(body: CitizenIn, admin: Admin, registry: RegistryDep) -> Response:
    details = CitizenDetails(
        person=parse_person_id(body.id_number),
        full_name=body.full_name,
        date_of_birth=body.date_of_birth,
        sex=body.sex,
        residence=AreaCode.parse(body.residence),
        phone=body.phone,
    )
    return _changed(registry.population.register_citizen(admin.request, details))


@router.post(
    "/{id_number}/corrections",
    status_code=201,
    responses=ERRORS,
    summary="Correct a citizen's name, date of birth or sex",
    response_model=Accepted[CitizenChanged],
)
def correct_record(
    id_number: IdNumberPath,
    body: CorrectionIn,
    admin: Admin,
    registry: RegistryDep,
) -> Response:
    outcome = registry.population.correct_record(
        admin.request,
        parse_person_id(id_number),
        body.reason,
        full_name=body.full_name,
        date_of_birth=body.date_of_birth,
        sex=body.sex,
    )
    return _changed(outcome)


@router.post(
    "/{id_number}/residence",
    status_code=201,
    responses=ERRORS,
    summary="Change the residence",
    response_model=Accepted[CitizenChanged],
)
def change_residence(
    id_number: IdNumberPath,
    body: ResidenceIn,
    admin: Admin,
    registry: RegistryDep,
) -> Response:
    outcome = registry.population.change_residence(
        admin.request, parse_person_id(id_number), AreaCode.parse(body.residence)
    )
    return _changed(outcome)


@router.post(
    "/{id_number}/contact",
    status_code=201,
    responses=ERRORS,
    summary="Change the phone number (an administrator, or the citizen themself)",
    response_model=Accepted[CitizenChanged],
)
def change_contact(
    id_number: IdNumberPath,
    body: ContactIn,
    who: Annotated[Caller, Depends(caller(Role.ADMIN, Role.CITIZEN))],
    registry: RegistryDep,
) -> Response:
    person = parse_person_id(id_number)
    ensure_own_record(who.principal, str(person))
    return _changed(registry.population.change_contact(who.request, person, body.phone))


@router.post(
    "/{id_number}/death",
    status_code=201,
    responses=ERRORS,
    summary="Record a death",
    response_model=Accepted[CitizenChanged],
)
def record_death(
    id_number: IdNumberPath,
    body: DeathIn,
    admin: Admin,
    registry: RegistryDep,
) -> Response:
    outcome = registry.population.record_death(
        admin.request, parse_person_id(id_number), body.died_on
    )
    return _changed(outcome)


@router.post(
    "/{id_number}/move",
    status_code=201,
    responses=ERRORS,
    summary="Move a record to the right ID number (a wrong number, or a duplicate)",
    response_model=Accepted[RecordMoved],
)
def move_record(
    id_number: IdNumberPath,
    body: MoveIn,
    admin: Admin,
    registry: RegistryDep,
) -> Response:
    """The vaccination history moves with the record; a move cut short is completed by
    sending it again."""
    source, target = parse_person_id(id_number), parse_person_id(body.target)
    outcomes = move_person(
        registry.population, registry.immunization, admin.request, source, target, body.reason
    )
    outcome = Outcome(outcomes[-1].position, replayed=all(o.replayed for o in outcomes))
    return accepted(outcome, Accepted[RecordMoved], {"from": str(source), "to": str(target)})
