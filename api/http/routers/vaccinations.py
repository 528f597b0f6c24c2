"""The vaccination record: registration, screening, doses and their corrections, reactions.

Only medical staff record here, always for their own unit, which comes from the token;
a dose is corrected or voided only by staff of the unit that gave it. Recording a dose,
the busiest command, runs on the command threads (`run_command`), and the app calls
`record_dose` from `api.http.dose_path`, ahead of the middleware and of the dependencies
declared here (which the OpenAPI document still shows).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from api.http.dependencies import (
    API_PREFIX,
    Caller,
    RegistryDep,
    accepted,
    caller,
    registry_of,
    run_command,
)
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.commands import (
    Accepted,
    AdverseEventIn,
    AdverseEventReported,
    DoseCorrected,
    DoseCorrectionIn,
    DoseFields,
    DoseIn,
    DoseRecorded,
    DoseVoided,
    DoseVoidIn,
    RecoveryIn,
    RecoveryRecorded,
    RegisteredForVaccination,
    ScreeningIn,
    ScreeningRecorded,
    VaccinationRegistrationIn,
)
from api.http.security import Principal, ensure_unit
from application.immunization import DoseGiven, IdentityAtSite
from domain.identity import PersonId, parse_person_id
from infrastructure.bootstrap import Registry

router = APIRouter(prefix=f"{API_PREFIX}/vaccinations", tags=["vaccinations"])

STAFF_ROLES = (Role.MEDICAL_STAFF,)
Staff = Annotated[Caller, Depends(caller(*STAFF_ROLES))]
ERRORS = problem_responses(401, 403, 404, 409, 422, 503)
DoseAccepted = Accepted[DoseRecorded]


def _given(fields: DoseFields, principal: Principal) -> DoseGiven:
    return DoseGiven(
        product=fields.product,
        lot=fields.lot,
        given_at=fields.given_at,
        site=fields.site,
        kind=fields.kind,
        vaccinator=fields.vaccinator or principal.subject,
        override_reason=fields.override_reason,
    )


def _ensure_dose_of_own_unit(
    registry: Registry, principal: Principal, person: PersonId, dose_id: UUID
) -> None:
    """A missing record or dose is left for the application to report."""
    record = registry.immunization.vaccination_record(person)
    dose = next((d for d in record.doses if d.dose_id == dose_id), None) if record else None
    if dose is not None:
        ensure_unit(principal, dose.unit)


@router.post(
    "/registrations",
    status_code=201,
    responses=ERRORS,
    summary="Register for vaccination",
    response_model=Accepted[RegisteredForVaccination],
)
def register_for_vaccination(
    body: VaccinationRegistrationIn, staff: Staff, registry: RegistryDep
) -> Response:
    identity = IdentityAtSite(parse_person_id(body.id_number), body.full_name, body.date_of_birth)
    outcome = registry.immunization.register_for_vaccination(
        staff.request, identity, body.priority_group
    )
    return accepted(outcome, Accepted[RegisteredForVaccination])


@router.post(
    "/screenings",
    status_code=201,
    responses=ERRORS,
    summary="Record a screening",
    response_model=Accepted[ScreeningRecorded],
)
def screen(body: ScreeningIn, staff: Staff, registry: RegistryDep) -> Response:
    outcome = registry.immunization.screen(
        staff.request,
        parse_person_id(body.id_number),
        body.outcome,
        postponed_until=body.postponed_until,
        notes=body.notes,
    )
    return accepted(outcome, Accepted[ScreeningRecorded])


@router.post(
    "/doses",
    status_code=201,
    response_model=DoseAccepted,
    responses=ERRORS,
    summary="Record a dose given at the caller's unit",
)
async def record_dose(body: DoseIn, staff: Staff, request: Request) -> Response:
    """The identity captured at the site must match the register. A dose that breaks a
    rule is refused (422, with the rule's code) unless it carries an `override_reason`."""
    immunization = registry_of(request).immunization
    identity = IdentityAtSite(parse_person_id(body.id_number), body.full_name, body.date_of_birth)
    given = _given(body, staff.principal)
    outcome = await run_command(lambda: immunization.record_dose(staff.request, identity, given))
    return accepted(outcome, DoseAccepted)


@router.post(
    "/doses/{dose_id}/corrections",
    status_code=201,
    responses=ERRORS,
    summary="Correct a dose given at the caller's unit",
    response_model=Accepted[DoseCorrected],
)
def correct_dose(
    dose_id: UUID,
    body: DoseCorrectionIn,
    staff: Staff,
    registry: RegistryDep,
) -> Response:
    person = parse_person_id(body.id_number)
    _ensure_dose_of_own_unit(registry, staff.principal, person, dose_id)
    outcome = registry.immunization.correct_dose(
        staff.request, person, dose_id, body.reason, _given(body, staff.principal)
    )
    return accepted(outcome, Accepted[DoseCorrected])


@router.post(
    "/doses/{dose_id}/void",
    status_code=201,
    responses=ERRORS,
    summary="Void a dose given at the caller's unit (recorded in error)",
    response_model=Accepted[DoseVoided],
)
def void_dose(dose_id: UUID, body: DoseVoidIn, staff: Staff, registry: RegistryDep) -> Response:
    person = parse_person_id(body.id_number)
    _ensure_dose_of_own_unit(registry, staff.principal, person, dose_id)
    outcome = registry.immunization.void_dose(staff.request, person, dose_id, body.reason)
    return accepted(outcome, Accepted[DoseVoided])


@router.post(
    "/doses/{dose_id}/adverse-events",
    status_code=201,
    responses=ERRORS,
    summary="Report an adverse event after a dose",
    response_model=Accepted[AdverseEventReported],
)
def report_adverse_event(
    dose_id: UUID,
    body: AdverseEventIn,
    staff: Staff,
    registry: RegistryDep,
) -> Response:
    outcome = registry.immunization.report_adverse_event(
        staff.request,
        parse_person_id(body.id_number),
        dose_id,
        body.onset,
        body.severity,
        body.description,
    )
    return accepted(outcome, Accepted[AdverseEventReported])


@router.post(
    "/recoveries",
    status_code=201,
    responses=ERRORS,
    summary="Record a recovery from COVID-19 (date of the positive test)",
    response_model=Accepted[RecoveryRecorded],
)
def record_recovery(body: RecoveryIn, staff: Staff, registry: RegistryDep) -> Response:
    outcome = registry.immunization.record_recovery(
        staff.request, parse_person_id(body.id_number), body.positive_test_on
    )
    return accepted(outcome, Accepted[RecoveryRecorded])
