"""Every HTTP error as an RFC 9457 problem document, in one shape.

A problem is served as ``application/problem+json``::

    {"type": "https://vaxreg.example/problems/<code>", "title": "...", "status": 404,
     "detail": "...", "code": "<code>", "instance": "/v1/...", ...extra members}

`code` is stable and machine-readable; the extra members carry what a client needs to
react (the details of a `DomainError`, `retry_after`, the list of validation `errors`).

Wiring, in the app factory, after every other ``add_middleware`` call so that the
catch-all wraps them::

    app.add_middleware(BodySizeLimit, max_bytes=1_000_000, exempt=("/v1/imports",))
    install_problem_handlers(app)

and on routes, for the documentation: ``@router.get(..., responses=problem_responses(404))``.
"""

from __future__ import annotations

import http
import logging
import math
import re
import traceback
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import (
    AlreadyRegistered,
    CitizenNotFound,
    Conflict,
    DeclarationNotFound,
    DomainError,
    DoseNotFound,
    IdempotencyKeyReused,
    LotNotFound,
)
from infrastructure.unavailable import STORES_DOWN
from projections.stores import ReadModelsUnavailable

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://vaxreg.example/problems/"
RESERVED_MEMBERS = frozenset({"type", "title", "status", "detail", "code", "instance"})
STORE_RETRY_AFTER_SECONDS = 5
UNAVAILABLE: tuple[type[Exception], ...] = (
    *STORES_DOWN,
    ReadModelsUnavailable,
)
"""Errors answered 503 with ``Retry-After``: a store does not answer, or the read models
are being rebuilt."""

DOMAIN_ERROR_STATUS: Mapping[type[DomainError], int] = {
    CitizenNotFound: 404,
    DeclarationNotFound: 404,
    DoseNotFound: 404,
    LotNotFound: 404,
    Conflict: 409,
    AlreadyRegistered: 409,
    IdempotencyKeyReused: 422,
}
"""HTTP status per domain error class; any other `DomainError` is a 422."""


class Problem(BaseModel):
    """An RFC 9457 problem document; members beyond these depend on `code`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[f"{PROBLEM_TYPE_BASE}citizen_not_found"])
    title: str = Field(examples=["Citizen not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no citizen is registered under this ID number"])
    code: str = Field(examples=["citizen_not_found"])
    instance: str | None = Field(default=None, examples=["/v1/citizens/001204000123"])


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class ProblemError(HTTPException):
    """An HTTP error with a stable `code`; extra keyword arguments become problem members."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, **extras: Any
    ) -> None:
        super().__init__(self.status, detail, dict(headers) if headers else None)
        self.extras = extras


class _RetryLater(ProblemError):
    def __init__(self, detail: str, *, retry_after: float, **extras: Any) -> None:
        seconds = max(0, math.ceil(retry_after))
        super().__init__(
            detail, headers={"Retry-After": str(seconds)}, retry_after=seconds, **extras
        )
        self.retry_after = seconds


class ServiceUnavailable(_RetryLater):
    """The service is overloaded or a dependency is down; the client may retry later."""

    status = 503
    code = "service_unavailable"


class RateLimited(_RetryLater):
    status = 429
    code = "rate_limited"


class ContentTooLarge(ProblemError):
    status = 413
    code = "content_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"the request body is larger than {max_bytes} bytes",
            headers={"Connection": "close"},
            max_bytes=max_bytes,
        )


def problem_type(code: str) -> str:
    return PROBLEM_TYPE_BASE + code


def title_for(code: str) -> str:
    return code.replace("_", " ").capitalize()


def code_for_status(status: int) -> str:
    """The generic code of a status without a more specific one: 404 → ``not_found``."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON members of a problem; `extras` never override the standard members."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title_for(code),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    for key, value in (extras or {}).items():
        if key not in RESERVED_MEMBERS:
            body[key] = jsonable_encoder(value)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(status, code, detail, instance=instance, extras=extras),
        status_code=status,
        headers=headers,
    )


_EXAMPLE_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "content_too_large",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` argument of a route decorator documenting these error statuses."""
    schema = Problem.model_json_schema()
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        code = _EXAMPLE_CODES.get(status) or code_for_status(status)
        example = problem_body(status, code, http.HTTPStatus(status).description)
        responses[status] = {
            "description": http.HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema, "example": example}},
        }
    return responses


def _validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Pydantic errors reduced to where and what, never the (possibly large) input."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in errors
    ]


def _http_exception_problem(exc: HTTPException, instance: str | None) -> Response:
    if isinstance(exc, ProblemError):
        code, extras = exc.code, exc.extras
    else:
        code, extras = code_for_status(exc.status_code), {}
    if isinstance(exc.detail, str):
        detail = exc.detail
    else:
        detail = http.HTTPStatus(exc.status_code).phrase
        extras = {**extras, "errors": exc.detail}
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem_response(
        exc.status_code, code, detail, instance=instance, headers=exc.headers, extras=extras
    )


def domain_error_status(
    exc: DomainError, statuses: Mapping[type[DomainError], int] = DOMAIN_ERROR_STATUS
) -> int:
    for cls in type(exc).__mro__:
        if cls in statuses:
            return statuses[cls]
    return 422


def problem_for_exception(
    exc: Exception,
    *,
    instance: str | None = None,
    statuses: Mapping[type[DomainError], int] = DOMAIN_ERROR_STATUS,
    route: str | None = None,
    method: str | None = None,
) -> Response:
    """The response for a known kind of error; anything else is a logged, generic 500.

    `route` (the path template, never the actual path) and `method` only go to the log.
    """
    if isinstance(exc, HTTPException):
        return _http_exception_problem(exc, instance)
    if isinstance(exc, DomainError):
        return problem_response(
            domain_error_status(exc, statuses),
            exc.code,
            exc.message,
            instance=instance,
            extras=exc.details,
        )
    if isinstance(exc, RequestValidationError):
        return problem_response(
            422,
            "validation_failed",
            "the request is not valid",
            instance=instance,
            extras={"errors": _validation_errors(exc.errors())},
        )
    if isinstance(exc, UNAVAILABLE):
        logger.warning("store unavailable: %s", type(exc).__qualname__)
        return _http_exception_problem(
            ServiceUnavailable(
                "the service is temporarily unavailable",
                retry_after=STORE_RETRY_AFTER_SECONDS,
            ),
            instance,
        )
    return _internal_error(exc, instance, route=route, method=method)


def _internal_error(
    exc: Exception, instance: str | None, *, route: str | None, method: str | None
) -> ProblemResponse:
    """Logs the error's type and stack (not its message, which may hold personal data)."""
    error_id = uuid.uuid4().hex[:16]
    logger.error(
        "unhandled %s in %s %s [error_id=%s]\n%s",
        type(exc).__qualname__,
        method or "-",
        route or "-",
        error_id,
        "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
    )
    return problem_response(
        500,
        "internal_error",
        "an unexpected error occurred; quote the error_id when reporting it",
        instance=instance,
        extras={"error_id": error_id},
    )


def _route_template(scope: Scope) -> str | None:
    path = getattr(scope.get("route"), "path_format", None)
    return path if isinstance(path, str) else None


class _CatchAll:
    """Turns an unhandled exception into a 500 problem without re-raising it.

    Starlette's own last-resort handler re-raises so the server logs the exception with
    its message; messages can carry personal data, so this stops the exception here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = _internal_error(
                exc, scope.get("path"), route=_route_template(scope), method=scope.get("method")
            )
            if not started:
                await response(scope, receive, send)


def install_problem_handlers(
    app: FastAPI, statuses: Mapping[type[DomainError], int] | None = None
) -> None:
    """Render every error raised by `app` as a problem.

    `statuses` adds to or overrides `DOMAIN_ERROR_STATUS`. Call it after the app's other
    ``add_middleware`` calls so the catch-all wraps them too.
    """
    merged = {**DOMAIN_ERROR_STATUS, **(statuses or {})}

    async def handle(request: Request, exc: Exception) -> Response:
        return problem_for_exception(
            exc,
            instance=request.url.path,
            statuses=merged,
            route=_route_template(request.scope),
            method=request.method,
        )

    handled: tuple[type[Exception], ...] = (
        HTTPException,
        RequestValidationError,
        DomainError,
        *UNAVAILABLE,
    )
    for exc_class in handled:
        app.add_exception_handler(exc_class, handle)
    app.add_middleware(_CatchAll)
    app.add_exception_handler(Exception, handle)


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header `name` (lower case), read off the scope."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with a 413 problem.

    A declared Content-Length over the limit is refused before the app runs, one within it
    needs no counting; otherwise the streamed bytes are counted and reading past the
    limit raises `ContentTooLarge`.
    Paths under an `exempt` prefix (streaming imports, limited per line) are not limited.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: Collection[str] = ()) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = tuple(prefix.rstrip("/") for prefix in exempt)
        self._exempt_under = tuple(prefix + "/" for prefix in self.exempt)

    def is_exempt(self, path: str) -> bool:
        return path in self.exempt or path.startswith(self._exempt_under)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = scope_header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                # The server reads no more than the declared length as this request's body.
                await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ContentTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except ContentTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_for_exception(ContentTooLarge(self.max_bytes), instance=scope["path"])
        await response(scope, receive, send)
