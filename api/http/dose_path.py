"""Recording a dose, the busiest command, served ahead of FastAPI's middleware and routing.

``POST /v1/vaccinations/doses`` is declared, documented and carried out by its route,
`api.http.routers.vaccinations.record_dose`. `DoseRecording` calls that endpoint itself,
in place of the middleware stack, the routing and the dependency resolution, which cost
the event loop about 0.4 ms a dose, a fifth of what a worker spent on one (doses/s rose
by a quarter without them; docs/performance.md). It checks what the route's
dependencies check, in their order (the bearer token, then the ``Idempotency-Key``
header, then the role, then the body, whose errors join the header's in one 422), limits
the body as `BodySizeLimit` does, renders every error as the app's problem document and
counts the request in the metrics under its route. (A dose is not a read of personal
data, so the access log has nothing to record.)
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.http.dependencies import API_PREFIX, IDEMPOTENCY_KEY_HEADER, Caller, actor_of
from api.http.metrics import MetricsRegistry
from api.http.problems import BodySizeLimit, problem_for_exception, scope_header
from api.http.routers.vaccinations import STAFF_ROLES, record_dose
from api.http.schemas.commands import DoseIn
from api.http.security import TokenVerifier, bearer_principal, ensure_role
from application.commands import MAX_REQUEST_ID_LENGTH
from application.commands import Request as CommandRequest

DOSES = f"{API_PREFIX}/vaccinations/doses"
ROLES = frozenset(STAFF_ROLES)
_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY_HEADER.lower().encode()

Errors = list[dict[str, Any]]


def is_dose_recording(scope: Scope) -> bool:
    return bool(scope["path"] == DOSES and scope["method"] == "POST")


def _idempotency_key(scope: Scope, errors: Errors) -> str | None:
    key = scope_header(scope, _IDEMPOTENCY_KEY)
    if key is not None and len(key) > MAX_REQUEST_ID_LENGTH:
        errors.append(
            {
                "type": "string_too_long",
                "loc": ("header", IDEMPOTENCY_KEY_HEADER),
                "msg": f"String should have at most {MAX_REQUEST_ID_LENGTH} characters",
            }
        )
    return key


async def _body(request: Request) -> bytes:
    """The body as FastAPI reads it: one that cannot be read (the client left) is a 400."""
    try:
        return await request.body()
    except HTTPException:
        raise
    except Exception as error:
        raise HTTPException(400, "There was an error parsing the body") from error


def _is_json(content_type: str) -> bool:
    maintype, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def _dose(body: bytes, content_type: str | None, errors: Errors) -> DoseIn | None:
    """The body as FastAPI reads and validates a JSON body: parsed only when it says it
    is JSON."""
    if not body:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
        return None
    data: Any = body
    if content_type is not None and _is_json(content_type):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as error:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error"}]
            ) from error
    try:
        return DoseIn.model_validate(data, from_attributes=True)
    except ValidationError as error:
        errors.extend({**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False))
        return None


class DoseRecording:
    """``POST /v1/vaccinations/doses`` as one plain ASGI handler (see the module)."""

    def __init__(self, app: FastAPI, max_body_bytes: int) -> None:
        self._app = app
        self._metrics: MetricsRegistry = app.state.metrics
        self._verifier: TokenVerifier = app.state.token_verifier
        self.serve = BodySizeLimit(self._serve, max_bytes=max_body_bytes)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            response = await self._answer(scope, receive)
        except Exception as error:
            response = problem_for_exception(
                error, instance=scope["path"], route=DOSES, method=scope["method"]
            )
        await response(scope, receive, send)
        self._metrics.observe(
            scope["method"], DOSES, response.status_code, time.perf_counter() - started
        )

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        principal = await bearer_principal(scope, self._verifier)
        errors: Errors = []
        key = _idempotency_key(scope, errors)
        if not errors:
            ensure_role(principal, ROLES)
        scope["app"] = self._app
        request = Request(scope, receive)
        dose = _dose(await _body(request), request.headers.get("content-type"), errors)
        if errors or dose is None:
            raise RequestValidationError(errors)
        staff = Caller(principal, CommandRequest(actor_of(principal), key))
        return await record_dose(dose, staff, request)
