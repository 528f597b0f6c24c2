"""The checkpoint lookups, answered ahead of the middleware stack: the stored document, as is.

``GET /v1/checkpoint/{id_number}`` and ``GET /v1/checkpoint/by-token/{qr_token}`` are the
hot path. `CheckpointLookups` serves them before FastAPI's middleware and routing (the
app's ``__call__`` hands them over, see `route_of`): it verifies the bearer token,
checks the role, reads one value, sends its bytes, counts the request in the metrics and
queues the lookup for the access log. They stay in the OpenAPI document: :func:`install`
adds their operations, with the document's schema and an example, to ``openapi()``.

Tokens are verified like every other route's (`verify_without_blocking`).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from api.http.dependencies import API_PREFIX, actor_of
from api.http.metrics import MetricsRegistry
from api.http.problems import (
    ServiceUnavailable,
    problem_for_exception,
    problem_responses,
)
from api.http.roles import Role
from api.http.routers.queries import POSITION_PATTERN, WAIT_FOR_DESCRIPTION, reach, read_models
from api.http.security import TokenVerifier, bearer_principal, ensure_role
from application.access_log import AccessEntry, AccessRecorder
from domain.base import Actor
from domain.errors import CitizenNotFound, DeclarationNotFound, InvalidValue
from domain.identity import parse_person_id
from infrastructure.bootstrap import Registry
from projections.stores import ReadModelsUnavailable

ROLES = frozenset({Role.CHECKPOINT_OFFICER, Role.AUDITOR, Role.ADMIN})
REBUILD_RETRY_AFTER_SECONDS = 2
LOOKUP = "checkpoint_lookup"
"""What a lookup is recorded as in the access log."""
BY_ID = f"{API_PREFIX}/checkpoint/{{id_number}}"
BY_TOKEN = f"{API_PREFIX}/checkpoint/by-token/{{qr_token}}"
_BY_ID_PREFIX = f"{API_PREFIX}/checkpoint/"
_BY_TOKEN_SEGMENT = "by-token/"
_METHODS = ("GET", "HEAD")
_JSON_HEADERS = [(b"content-type", b"application/json")]
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


async def _reader(scope: Scope, verifier: TokenVerifier) -> Actor:
    """The reader of the request's bearer token, if its role may look up statuses."""
    principal = await bearer_principal(scope, verifier)
    ensure_role(principal, ROLES)
    return actor_of(principal)


def route_of(path: str) -> str | None:
    """The template of the checkpoint route `path` asks for, or None for any other path."""
    if not path.startswith(_BY_ID_PREFIX):
        return None
    rest = path[len(_BY_ID_PREFIX) :]
    if rest.startswith(_BY_TOKEN_SEGMENT):
        rest = rest[len(_BY_TOKEN_SEGMENT) :]
        return BY_TOKEN if rest and "/" not in rest else None
    return BY_ID if rest and "/" not in rest else None


def _wait_for(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if b"wait_for" not in query:
        return None
    wait_for = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("wait_for")
    if wait_for is None:
        return None
    if not _POSITION.match(wait_for[-1]):
        raise InvalidValue("wait_for is CONTEXT:POSITION[,...]", field="wait_for")
    return wait_for[-1]


def _as_problem(error: Exception) -> Exception:
    """The error a client is told of: read models being rebuilt say so in their 503 (a
    store that is down is a 503 of `problem_for_exception`)."""
    if isinstance(error, ReadModelsUnavailable):
        return ServiceUnavailable(
            "checkpoint status is being rebuilt; try again shortly",
            retry_after=REBUILD_RETRY_AFTER_SECONDS,
        )
    return error


class CheckpointLookups:
    """Both checkpoint routes as one plain ASGI handler, served ahead of the middleware.

    It does what the middleware stack does for these routes, in fewer steps: every
    error is a problem document, every request is counted in the metrics under its
    route template, and every lookup answered is queued for the access log (who read
    whose status; a lookup by QR token under the pseudonym of the declaration's owner).
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._registry: Registry = app.state.registry
        self._metrics: MetricsRegistry = app.state.metrics
        self._recorder: AccessRecorder = app.state.access_recorder

    async def serve(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request for `route` (see `route_of`)."""
        started = time.perf_counter()
        try:
            if scope["method"] not in _METHODS:
                raise HTTPException(405, headers={"Allow": ", ".join(_METHODS)})
            status = await self._answer(route, scope, send)
        except Exception as error:
            response = problem_for_exception(
                _as_problem(error), instance=scope["path"], route=route, method=scope["method"]
            )
            await response(scope, receive, send)
            status = response.status_code
        self._metrics.observe(scope["method"], route, status, time.perf_counter() - started)

    async def _answer(self, route: str, scope: Scope, send: Send) -> int:
        reader = await _reader(scope, self._app.state.token_verifier)
        registry = self._registry
        scope["app"] = self._app
        models = read_models(Request(scope))
        wait_for = _wait_for(scope)
        if wait_for is not None:
            await reach(models, registry, wait_for)
        now = registry.clock()
        value = scope["path"].rpartition("/")[2]
        if route == BY_ID:
            subject = registry.ids.pseudonym(parse_person_id(value))
            document = await models.checkpoint_document(subject, now)
            if document is None:
                raise CitizenNotFound("no checkpoint status is known for this person")
        else:
            declaration_id = registry.qr_tokens.verify(value, now)
            owner = await models.declaration_owner(declaration_id)
            document = None if owner is None else await models.checkpoint_document(owner, now)
            if owner is None or document is None:
                raise DeclarationNotFound("no such declaration", declaration_id=str(declaration_id))
            subject = owner
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(document)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": document})
        self._recorder.queue(AccessEntry(reader, LOOKUP, subject, now))
        return 200


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
                "description": WAIT_FOR_DESCRIPTION,
            },
        ],
        "responses": responses,
    }


def install(app: FastAPI) -> CheckpointLookups:
    """The checkpoint lookups of `app` (built with its registry, metrics and access
    recorder in ``app.state``), and their operations in its OpenAPI document."""
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
    return CheckpointLookups(app)
