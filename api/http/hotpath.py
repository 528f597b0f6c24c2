"""The checkpoint lookups as plain Starlette routes: the stored document, served as is.

``GET /v1/checkpoint/{id_number}`` and ``GET /v1/checkpoint/by-token/{qr_token}`` skip
FastAPI's per-request machinery (dependency resolution, response validation and
serialisation): they verify the bearer token, check the role, read one value and send
its bytes. They stay in the OpenAPI document: :func:`install` adds their operations,
with the document's schema and an example, to the app's ``openapi()``.

Verified tokens are remembered for `PRINCIPAL_TTL_SECONDS`, so a revocation reaches
this path within that time.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.dependencies import API_PREFIX
from api.http.problems import ServiceUnavailable, problem_for_exception, problem_responses
from api.http.routers.queries import POSITION_PATTERN, reach, read_models
from api.http.security import (
    AuthenticationError,
    AuthorizationError,
    Principal,
    Role,
    get_token_verifier,
)
from domain.errors import CitizenNotFound, DeclarationNotFound, InvalidValue
from domain.identity import parse_person_id
from infrastructure.bootstrap import Registry
from projections.stores import ReadModelsUnavailable

ROLES = frozenset({Role.CHECKPOINT_OFFICER, Role.AUDITOR, Role.ADMIN})
PRINCIPAL_TTL_SECONDS = 2.0
PRINCIPAL_CACHE_SIZE = 10_000
REBUILD_RETRY_AFTER_SECONDS = 2
BY_ID = f"{API_PREFIX}/checkpoint/{{id_number}}"
BY_TOKEN = f"{API_PREFIX}/checkpoint/by-token/{{qr_token}}"
_POSITION = re.compile(POSITION_PATTERN)


class DeclarationOut(BaseModel):
    id: str
    origin: str
    origin_risk_level: int | None
    destination: str
    travel_date: str
    valid_until: str
    symptoms: list[str]
    contact_with_confirmed_case: bool
    stayed_in_high_risk_area: bool


class VaccinationOut(BaseModel):
    status: str = Field(examples=["fully_vaccinated"])
    doses: int
    protected_from: str | None = Field(description="Local day protection starts (14 days on)")
    recovered_until: str | None


class TestOut(BaseModel):
    kind: str
    outcome: str
    sampled_at: str


class CheckpointDocument(BaseModel):
    """What a checkpoint officer sees: never the full record."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Nguyễn T. L.",
                    "birth_year": 1990,
                    "declaration": {
                        "id": "0916fd73aa874ec5aea9dec9f19b536f",
                        "origin": "079.760",
                        "origin_risk_level": 3,
                        "destination": "001.001",
                        "travel_date": "2021-08-23",
                        "valid_until": "2021-08-26T02:00:00Z",
                        "symptoms": [],
                        "contact_with_confirmed_case": False,
                        "stayed_in_high_risk_area": False,
                    },
                    "vaccination": {
                        "status": "fully_vaccinated",
                        "doses": 2,
                        "protected_from": "2021-08-16",
                        "recovered_until": None,
                    },
                    "test": None,
                    "verdict": "pass",
                    "reasons": [],
                }
            ]
        }
    )

    name: str | None = Field(description="Family name and initials")
    birth_year: int | None
    declaration: DeclarationOut | None = Field(description="The valid declaration, if any")
    vaccination: VaccinationOut
    test: TestOut | None = Field(description="The latest declared test result")
    verdict: str = Field(examples=["pass"])
    reasons: list[str] = Field(examples=[["origin_high_risk"]])


class _Principals:
    """Verified tokens for a short while: the hot path skips most JWT work on repeats."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("a bearer token is required", token_presented=False)
        now = time.monotonic()
        found = self._known.get(token)
        if found is not None and found[1] > now:
            principal = found[0]
        else:
            principal = get_token_verifier(request).verify(token)
            self._known[token] = (principal, now + PRINCIPAL_TTL_SECONDS)
            if len(self._known) > PRINCIPAL_CACHE_SIZE:
                self._known.popitem(last=False)
        if principal.role not in ROLES:
            raise AuthorizationError(
                f"the {principal.role.value} role may not do this",
                allowed_roles=sorted(role.value for role in ROLES),
            )
        return principal


def _endpoint(
    principals: _Principals, find: Callable[[Request, Registry], Any]
) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            principals.verify(request)
            registry: Registry = request.app.state.registry
            models = read_models(request)
            wait_for = request.query_params.get("wait_for")
            if wait_for is not None:
                if not _POSITION.match(wait_for):
                    raise InvalidValue("wait_for is CONTEXT:POSITION[,...]", field="wait_for")
                await reach(models, registry, wait_for)
            document = await find(request, registry)
            if document is None:
                raise CitizenNotFound("no checkpoint status is known for this person")
            return Response(document, media_type="application/json")
        except ReadModelsUnavailable:
            rebuilding = ServiceUnavailable(
                "checkpoint status is being rebuilt; try again shortly",
                retry_after=REBUILD_RETRY_AFTER_SECONDS,
            )
            return problem_for_exception(rebuilding, instance=request.url.path)
        except Exception as error:
            return problem_for_exception(error, instance=request.url.path)

    return endpoint


async def _by_id(request: Request, registry: Registry) -> bytes | None:
    person = parse_person_id(request.path_params["id_number"])
    models = read_models(request)
    return await models.checkpoint_document(registry.ids.pseudonym(person), registry.clock())


async def _by_token(request: Request, registry: Registry) -> bytes | None:
    now = registry.clock()
    declaration_id = registry.qr_tokens.verify(request.path_params["qr_token"], now)
    document = await read_models(request).checkpoint_by_declaration(declaration_id, now)
    if document is None:
        raise DeclarationNotFound("no such declaration", declaration_id=str(declaration_id))
    return document


def _operation(summary: str, parameter: str, description: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The checkpoint document in force now",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CheckpointDocument"},
                    "example": CheckpointDocument.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                }
            },
        }
    }
    for status, body in problem_responses(401, 403, 404, 422, 503).items():
        responses[str(status)] = body
    return {
        "tags": ["checkpoint"],
        "summary": summary,
        "operationId": f"checkpoint_by_{parameter}",
        "security": [{"HTTPBearer": []}],
        "parameters": [
            {
                "name": parameter,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": description,
            },
            {
                "name": "wait_for",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": POSITION_PATTERN},
                "description": "Answer only once the read models reflect this position",
            },
        ],
        "responses": responses,
    }


def install(app: FastAPI) -> None:
    """Mount the checkpoint routes ahead of the others and document them."""
    principals = _Principals()
    app.router.routes[0:0] = [
        Route(BY_TOKEN, _endpoint(principals, _by_token), methods=["GET"]),
        Route(BY_ID, _endpoint(principals, _by_id), methods=["GET"]),
    ]
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        model = CheckpointDocument.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model.pop("$defs", {}))
        schemas["CheckpointDocument"] = model
        paths = document.setdefault("paths", {})
        paths[BY_ID] = {
            "get": _operation(
                "A traveller's checkpoint status by ID number", "id_number", "ID number"
            )
        }
        paths[BY_TOKEN] = {
            "get": _operation(
                "A traveller's checkpoint status by declaration QR token",
                "qr_token",
                "The QR token of a health declaration",
            )
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
