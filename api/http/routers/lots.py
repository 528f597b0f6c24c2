"""The lot register: lots of each product, their expiry, and recalls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from api.http.dependencies import API_PREFIX, Caller, RegistryDep, accepted, caller
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.commands import Accepted, LotChanged, LotIn, RecallIn

router = APIRouter(prefix=f"{API_PREFIX}/lots", tags=["lots"])

Admin = Annotated[Caller, Depends(caller(Role.ADMIN))]


@router.post(
    "",
    status_code=201,
    responses=problem_responses(401, 403, 409, 422, 503),
    summary="Register a lot",
    response_model=Accepted[LotChanged],
)
def register_lot(body: LotIn, admin: Admin, registry: RegistryDep) -> Response:
    outcome = registry.immunization.register_lot(
        admin.request, body.product, body.lot_number, body.expires_on
    )
    return accepted(outcome, Accepted[LotChanged])


@router.post(
    "/{product}/{lot_number}/recall",
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
    summary="Recall a lot: doses from it given after now are refused",
    response_model=Accepted[LotChanged],
)
def recall_lot(
    product: Annotated[str, Path(min_length=1, max_length=40)],
    lot_number: Annotated[str, Path(min_length=1, max_length=64)],
    body: RecallIn,
    admin: Admin,
    registry: RegistryDep,
) -> Response:
    outcome = registry.immunization.recall_lot(admin.request, product, lot_number, body.reason)
    return accepted(outcome, Accepted[LotChanged])
