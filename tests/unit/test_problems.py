from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from api.http.problems import (
    PROBLEM_MEDIA_TYPE,
    BodySizeLimit,
    Problem,
    RateLimited,
    ServiceUnavailable,
    install_problem_handlers,
    problem_responses,
)
from api.http.security import AuthenticationError, AuthorizationError
from domain.errors import (
    AlreadyRegistered,
    CitizenMoved,
    CitizenNotFound,
    Conflict,
    DeclarationNotFound,
    DomainError,
    DoseNotFound,
    IdempotencyKeyReused,
    IntervalTooShort,
    LotNotFound,
)

CITIZEN_ID = "001204000123"


class Dose(BaseModel):
    product: str
    dose_number: int


def _app(errors: dict[str, Exception]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/raise/{name}", responses=problem_responses(404, 409, 422))
    def raise_named(name: str) -> None:
        raise errors[name]

    @app.post("/v1/doses")
    def record(dose: Dose, lot: int) -> Dose:
        return dose

    install_problem_handlers(app, statuses={CitizenMoved: 409})
    return app


ERRORS: dict[str, Exception] = {
    "citizen": CitizenNotFound("no such citizen", id_number=CITIZEN_ID),
    "declaration": DeclarationNotFound("no such declaration"),
    "dose": DoseNotFound("no such dose"),
    "lot": LotNotFound("no such lot"),
    "conflict": Conflict("too many concurrent writers"),
    "registered": AlreadyRegistered("already registered"),
    "idempotency": IdempotencyKeyReused("key reused with another body"),
    "interval": IntervalTooShort(
        "the second dose is too early", earliest=date(2024, 3, 29), min_days=28
    ),
    "domain": DomainError("something broke a rule"),
    "moved": CitizenMoved("moved away"),
    "reserved": DomainError("details clash", status=200, type="x", extra="kept"),
    "unauthenticated": AuthenticationError("the token has expired"),
    "forbidden": AuthorizationError("not yours", unit="U01"),
    "teapot": HTTPException(418, "short and stout"),
    "structured": HTTPException(400, {"field": "lot"}),
    "unavailable": ServiceUnavailable("projections are rebuilding", retry_after=2.2),
    "limited": RateLimited("slow down", retry_after=30),
    "redis": redis.ConnectionError("connection refused"),
    "bug": RuntimeError(f"lookup failed for {CITIZEN_ID}"),
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(_app(ERRORS)) as client:
        yield client


def _problem(client: TestClient, name: str, status: int) -> dict[str, Any]:
    response = client.get(f"/v1/raise/{name}")
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"https://vaxreg.example/problems/{body['code']}"
    assert body["instance"] == f"/v1/raise/{name}"
    Problem.model_validate(body)
    return body


def test_domain_error_shape(client: TestClient) -> None:
    assert _problem(client, "citizen", 404) == {
        "type": "https://vaxreg.example/problems/citizen_not_found",
        "title": "Citizen not found",
        "status": 404,
        "detail": "no such citizen",
        "code": "citizen_not_found",
        "instance": "/v1/raise/citizen",
        "id_number": CITIZEN_ID,
    }


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("declaration", 404, "declaration_not_found"),
        ("dose", 404, "dose_not_found"),
        ("lot", 404, "lot_not_found"),
        ("conflict", 409, "conflict"),
        ("registered", 409, "already_registered"),
        ("idempotency", 422, "idempotency_key_reused"),
        ("interval", 422, "interval_too_short"),
        ("domain", 422, "domain_error"),
        ("moved", 409, "citizen_moved"),
        ("unauthenticated", 401, "unauthenticated"),
        ("forbidden", 403, "forbidden"),
        ("teapot", 418, "i_m_a_teapot"),
    ],
)
def test_status_and_code_per_error(client: TestClient, name: str, status: int, code: str) -> None:
    assert _problem(client, name, status)["code"] == code


def test_details_become_members_without_overriding_standard_ones(client: TestClient) -> None:
    body = _problem(client, "interval", 422)
    assert body["earliest"] == "2024-03-29"
    assert body["min_days"] == 28
    body = _problem(client, "reserved", 422)
    assert body["extra"] == "kept"
    assert body["code"] == "domain_error"


def test_problem_error_members_and_headers(client: TestClient) -> None:
    assert _problem(client, "forbidden", 403)["unit"] == "U01"
    response = client.get("/v1/raise/unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _problem(client, "structured", 400)["errors"] == {"field": "lot"}


@pytest.mark.parametrize(
    ("name", "status", "retry_after"),
    [("unavailable", 503, 3), ("limited", 429, 30), ("redis", 503, 5)],
)
def test_retry_after(client: TestClient, name: str, status: int, retry_after: int) -> None:
    response = client.get(f"/v1/raise/{name}")
    assert response.status_code == status
    assert response.headers["Retry-After"] == str(retry_after)
    assert _problem(client, name, status)["retry_after"] == retry_after


def test_unexpected_error_is_a_generic_500_logged_without_its_message(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.http.problems"):
        body = _problem(client, "bug", 500)
    assert body["code"] == "internal_error"
    assert CITIZEN_ID not in str(body)
    assert "RuntimeError" not in str(body)
    assert len(body["error_id"]) == 16
    logged = caplog.text
    assert "RuntimeError" in logged
    assert body["error_id"] in logged
    assert "/v1/raise/{name}" in logged
    assert CITIZEN_ID not in logged


def test_error_in_a_middleware_is_still_a_problem() -> None:
    app = FastAPI()

    @app.middleware("http")
    async def broken(request: Request, call_next: Any) -> Any:
        raise ValueError("boom")

    install_problem_handlers(app)
    response = TestClient(app).get("/anything")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


def test_validation_errors_list_locations_not_inputs(client: TestClient) -> None:
    huge = "9" * 10_000
    response = client.post(
        "/v1/doses", params={"lot": huge + "x"}, json={"product": "x", "dose_number": huge + "x"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["code"] == "validation_failed"
    assert huge not in response.text
    locations = sorted(error["loc"] for error in body["errors"])
    assert locations == [["body", "dose_number"], ["query", "lot"]]
    assert all(set(error) == {"loc", "msg", "type"} for error in body["errors"])


def test_routing_errors_have_the_same_shape(client: TestClient) -> None:
    response = client.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["code"] == "not_found"
    response = client.delete("/v1/doses")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_problem_responses_document_problem_json() -> None:
    operation = _app({}).openapi()["paths"]["/v1/raise/{name}"]["get"]
    for status in ("404", "409", "422"):
        content = operation["responses"][status]["content"]
        assert list(content) == [PROBLEM_MEDIA_TYPE]
        example = content[PROBLEM_MEDIA_TYPE]["example"]
        assert example["status"] == int(status)
        assert set(content[PROBLEM_MEDIA_TYPE]["schema"]["required"]) >= {"type", "code"}
    assert "HTTPValidationError" not in str(operation)


def _limited_app(max_bytes: int = 10) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    calls: list[str] = []

    @app.post("/v1/upload")
    @app.post("/v1/imports/citizens")
    async def upload(request: Request) -> dict[str, int]:
        calls.append(request.url.path)
        return {"bytes": len(await request.body())}

    app.add_middleware(BodySizeLimit, max_bytes=max_bytes, exempt=["/v1/imports/"])
    install_problem_handlers(app)
    return app, calls


def test_body_within_the_limit_passes() -> None:
    app, _ = _limited_app()
    assert TestClient(app).post("/v1/upload", content=b"x" * 10).json() == {"bytes": 10}


def test_declared_content_length_too_big_is_refused_before_the_app_runs() -> None:
    app, calls = _limited_app()
    response = TestClient(app).post("/v1/upload", content=b"x" * 11)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["code"] == "content_too_large"
    assert response.json()["max_bytes"] == 10
    assert calls == []


def test_chunked_body_too_big_is_refused() -> None:
    app, calls = _limited_app()

    def chunks() -> Iterator[bytes]:
        yield from (b"x" * 4 for _ in range(4))

    response = TestClient(app).post("/v1/upload", content=chunks())
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    assert response.json()["code"] == "content_too_large"
    assert calls == ["/v1/upload"]


def test_exempt_paths_are_not_limited() -> None:
    app, _ = _limited_app()
    response = TestClient(app).post("/v1/imports/citizens", content=b"x" * 100)
    assert response.json() == {"bytes": 100}


def _run_asgi(app: Any, chunks: list[bytes], path: str = "/v1/upload") -> list[Message]:
    scope: Scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


async def _read_all(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_streamed_bytes_are_counted_across_messages() -> None:
    limited = BodySizeLimit(_read_all, max_bytes=10)
    assert _run_asgi(limited, [b"x" * 5, b"x" * 5])[0]["status"] == 204
    refused = _run_asgi(limited, [b"x" * 5, b"x" * 5, b"x"])
    assert refused[0]["status"] == 413
    assert (b"content-type", PROBLEM_MEDIA_TYPE.encode()) in refused[0]["headers"]
    assert _run_asgi(limited, [b"x" * 50], path="/health")[0]["status"] == 413
    exempt = BodySizeLimit(_read_all, max_bytes=10, exempt=["/v1/imports"])
    assert _run_asgi(exempt, [b"x" * 50], path="/v1/imports")[0]["status"] == 204
    assert _run_asgi(exempt, [b"x" * 50], path="/v1/importsX")[0]["status"] == 413
