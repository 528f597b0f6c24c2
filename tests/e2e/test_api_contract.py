"""The API's contract: who may call what (the role matrix), and its own OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.http.app import create_app
from api.http.roles import Role
from api.http.security import TokenIssuer
from infrastructure.bootstrap import Registry
from tests.support.registry import LAN, lan_registry

ALL = frozenset(Role)
ADMIN_ONLY = frozenset({Role.ADMIN})
STAFF = frozenset({Role.MEDICAL_STAFF})
OVERSIGHT = frozenset({Role.ADMIN, Role.AUDITOR})
CHECKPOINT_READERS = frozenset({Role.CHECKPOINT_OFFICER, Role.AUDITOR, Role.ADMIN})
LAN_ID = str(LAN.person)
DOSE = "7b0e3c55-7f5e-4a8a-9d8c-5a8c2c1b9e01"

MATRIX: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/v1/citizens"): ADMIN_ONLY,
    ("POST", "/v1/citizens/{id_number}/corrections"): ADMIN_ONLY,
    ("POST", "/v1/citizens/{id_number}/residence"): ADMIN_ONLY,
    ("POST", "/v1/citizens/{id_number}/contact"): frozenset({Role.ADMIN, Role.CITIZEN}),
    ("POST", "/v1/citizens/{id_number}/death"): ADMIN_ONLY,
    ("POST", "/v1/citizens/{id_number}/move"): ADMIN_ONLY,
    ("GET", "/v1/citizens/{id_number}/history"): frozenset({Role.AUDITOR, Role.ADMIN}),
    ("POST", "/v1/risk-levels"): ADMIN_ONLY,
    ("POST", "/v1/declarations"): frozenset({Role.CITIZEN, Role.CHECKPOINT_OFFICER}),
    ("POST", "/v1/checks"): frozenset({Role.CHECKPOINT_OFFICER}),
    ("POST", "/v1/vaccinations/registrations"): STAFF,
    ("POST", "/v1/vaccinations/screenings"): STAFF,
    ("POST", "/v1/vaccinations/doses"): STAFF,
    ("POST", "/v1/vaccinations/doses/{dose_id}/corrections"): STAFF,
    ("POST", "/v1/vaccinations/doses/{dose_id}/void"): STAFF,
    ("POST", "/v1/vaccinations/doses/{dose_id}/adverse-events"): STAFF,
    ("POST", "/v1/vaccinations/recoveries"): STAFF,
    ("POST", "/v1/lots"): ADMIN_ONLY,
    ("POST", "/v1/lots/{product}/{lot_number}/recall"): ADMIN_ONLY,
    ("GET", "/v1/events"): frozenset({Role.INTEGRATOR, Role.AUDITOR}),
    ("GET", "/v1/access-log"): frozenset({Role.AUDITOR}),
    ("POST", "/v1/admin/population/imports"): ADMIN_ONLY,
    ("GET", "/v1/events/stream"): frozenset({Role.INTEGRATOR, Role.AUDITOR}),
    ("GET", "/v1/checkpoint/{id_number}"): CHECKPOINT_READERS,
    ("GET", "/v1/checkpoint/by-token/{qr_token}"): CHECKPOINT_READERS,
    ("GET", "/v1/citizens/{id_number}/eligibility"): frozenset(
        {Role.CITIZEN, Role.MEDICAL_STAFF, Role.AUDITOR, Role.ADMIN}
    ),
    ("GET", "/v1/statistics/doses"): OVERSIGHT,
    ("GET", "/v1/statistics/coverage"): OVERSIGHT,
    ("GET", "/v1/statistics/checkpoints"): OVERSIGHT,
    ("GET", "/v1/arrivals/{area}"): OVERSIGHT,
    ("GET", "/v1/worklists/{unit}"): frozenset({Role.MEDICAL_STAFF, Role.ADMIN, Role.AUDITOR}),
}
"""Roles allowed on each endpoint; every other role gets a 403."""

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
PARAMS = {
    "{id_number}": LAN_ID,
    "{dose_id}": DOSE,
    "{product}": "comirnaty",
    "{lot_number}": "PF1",
    "{unit}": "79-HCM-001",
    "{area}": "001",
}


def token(issuer: TokenIssuer, role: Role) -> str:
    claims: dict[str, Any] = {
        Role.MEDICAL_STAFF: {"unit": "79-HCM-001"},
        Role.CHECKPOINT_OFFICER: {"checkpoint": "HN-CP-07"},
    }.get(role, {})
    subject = LAN_ID if role is Role.CITIZEN else f"{role.value}-1"
    return issuer.mint(role, subject, **claims)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with lan_registry(tmp_path_factory.mktemp("contract")) as registry:
        yield registry


@pytest.fixture(scope="module")
def app(registry: Registry) -> FastAPI:
    return create_app(registry)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture(scope="module")
def issuer(registry: Registry) -> TokenIssuer:
    return TokenIssuer(registry.settings.secret_keys)


def test_the_matrix_names_every_endpoint(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert routes == set(MATRIX) | PUBLIC


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    for name, value in PARAMS.items():
        path = path.replace(name, value)
    if path.endswith("/stream"):
        with client.stream(method, path, params={"timeout": 0.05}, headers=headers) as reply:
            reply.read()
            return int(reply.status_code)
    body: dict[str, object] | None = {} if method == "POST" else None
    return int(client.request(method, path, json=body, headers=headers).status_code)


@pytest.mark.parametrize("role", [*Role, None], ids=[*(r.value for r in Role), "anonymous"])
@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_role_matrix(
    client: TestClient, issuer: TokenIssuer, method: str, path: str, role: Role | None
) -> None:
    """Allowed roles get past authorization (an empty body is then mostly a 422); others not."""
    headers = {} if role is None else {"Authorization": f"Bearer {token(issuer, role)}"}
    status = _call(client, method, path, headers)
    if role is None:
        assert status == 401
    elif role in MATRIX[(method, path)]:
        assert status not in (401, 403)
        assert status < 500
    else:
        assert status == 403


def test_a_bad_or_revoked_token_is_a_401(client: TestClient, issuer: TokenIssuer) -> None:
    assert client.get("/v1/events", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    minted = token(issuer, Role.INTEGRATOR)
    verifier = client.app.state.token_verifier  # type: ignore[attr-defined]
    verifier.revoke(verifier.verify(minted))
    refused = client.get("/v1/events", headers={"Authorization": f"Bearer {minted}"})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_citizen_changes_only_their_own_contact(client: TestClient, issuer: TokenIssuer) -> None:
    own = {"Authorization": f"Bearer {token(issuer, Role.CITIZEN)}"}
    mine = client.post(f"/v1/citizens/{LAN_ID}/contact", json={"phone": "0987654321"}, headers=own)
    theirs = client.post("/v1/citizens/001085004321/contact", json={"phone": None}, headers=own)
    assert (mine.status_code, theirs.status_code) == (201, 403)


def test_every_operation_documents_examples(app: FastAPI) -> None:
    document = app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
                assert document["components"]["schemas"][ref].get("examples"), (method, path)
    assert "CitizenRegistered" in document["components"]["schemas"]


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
OPERATIONS = sorted(f"{m} {p}" for m, p in set(MATRIX) | PUBLIC if not p.endswith("/stream"))


@pytest.fixture(scope="module")
def api_schema(app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("label", OPERATIONS)
def test_the_api_keeps_its_own_openapi_contract(
    api_schema: Any, issuer: TokenIssuer, label: str
) -> None:
    """No 5xx and no response outside the document, as a role allowed on the operation."""
    method, path = label.split(" ", 1)
    allowed = MATRIX.get((method, path), ADMIN_ONLY)
    role = Role.CITIZEN if Role.CITIZEN in allowed else min(allowed)
    headers = {"Authorization": f"Bearer {token(issuer, role)}"}
    operation = api_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    call()
