"""Bad input through the HTTP API: no 5xx, no partial writes, clear errors, early refusals.

schemathesis runs every operation of the OpenAPI document (the access log included) as
each role allowed on it; after a refused request the event store heads must not have
moved. Oversized bodies are refused with 413 before the app reads them; absurd values
(a date in year 9999, an enormous name) get a 422 problem and record nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.http.app import MAX_BODY_BYTES, create_app
from api.http.roles import Role
from api.http.security import TokenIssuer
from infrastructure.bootstrap import Registry
from projections.runtime import ProjectionRuntime
from tests.e2e.test_api_contract import MATRIX, PUBLIC, token
from tests.support.registry import LAN, lan_registry

ROLES = {**MATRIX, ("GET", "/v1/access-log"): frozenset({Role.AUDITOR})}
OPERATIONS = sorted(
    (f"{m} {p}", role)
    for (m, p), allowed in {**ROLES, **dict.fromkeys(PUBLIC, frozenset({Role.ADMIN}))}.items()
    if not p.endswith("/stream")
    for role in sorted(allowed)
)
CHECKS = [checks.not_a_server_error, checks.status_code_conformance]
LAN_ID = str(LAN.person)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with lan_registry(tmp_path_factory.mktemp("bad")) as registry:
        yield registry


@pytest.fixture(scope="module")
def app(registry: Registry) -> Iterator[FastAPI]:
    runtime = ProjectionRuntime.from_registry(registry)
    runtime.catch_up()
    app = create_app(registry, read_models=runtime.read_models, lag_source=runtime.lag_seconds)
    yield app
    app.state.access_recorder.close()


@pytest.fixture(scope="module")
def api_schema(app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def issuer(registry: Registry) -> TokenIssuer:
    return TokenIssuer(registry.settings.secret_keys)


@pytest.mark.parametrize(
    ("label", "role"), OPERATIONS, ids=[f"{op} as {r}" for op, r in OPERATIONS]
)
def test_no_operation_fails_or_writes_on_bad_input(
    api_schema: Any, registry: Registry, issuer: TokenIssuer, label: str, role: Role
) -> None:
    headers = {"Authorization": f"Bearer {token(issuer, role)}"}
    operation = api_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        before = registry.heads()
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            assert registry.heads() == before, (response.status_code, response.text[:300])

    call()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def _admin(issuer: TokenIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(issuer, Role.ADMIN)}"}


def test_an_oversized_body_is_refused_before_it_is_read(
    client: TestClient, issuer: TokenIssuer, registry: Registry
) -> None:
    before = registry.heads()
    huge = b'{"full_name": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    declared = client.post(
        "/v1/citizens", content=huge, headers=_admin(issuer) | {"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "content_too_large"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = client.post(
        "/v1/citizens",
        content=chunks(),
        headers=_admin(issuer) | {"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert registry.heads() == before


CITIZEN = {
    "id_number": "001085004321",
    "full_name": "Trần Văn Minh",
    "date_of_birth": "1985-11-20",
    "sex": "male",
    "residence": "001.001.00001",
}
DOSE = {
    "id_number": LAN_ID,
    "full_name": LAN.full_name,
    "date_of_birth": "1990-05-01",
    "product": "comirnaty",
    "lot": "PF1",
    "given_at": "2021-08-02T09:00:00+07:00",
    "site": "left_arm",
}
TRIP = {"origin": "079", "destination": "001", "travel_date": "2021-08-03", "transport": "car"}


@pytest.mark.parametrize(
    ("role", "path", "body"),
    [
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "date_of_birth": "9999-01-01"}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "date_of_birth": "0001-01-01"}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "full_name": "A" * 900_000}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "full_name": "\x00\u202e"}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "id_number": "0" * 40}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "residence": "999.999.99999"}),
        (Role.ADMIN, "/v1/citizens", {**CITIZEN, "phone": "+" + "9" * 19}),
        (Role.ADMIN, f"/v1/citizens/{LAN_ID}/death", {"died_on": "9999-12-31"}),
        (
            Role.MEDICAL_STAFF,
            "/v1/vaccinations/doses",
            {**DOSE, "given_at": "9999-12-31T00:00:00Z"},
        ),
        (Role.MEDICAL_STAFF, "/v1/vaccinations/doses", {**DOSE, "given_at": "2021-08-02T09:00:00"}),
        (
            Role.MEDICAL_STAFF,
            "/v1/vaccinations/doses",
            {**DOSE, "given_at": "1900-01-01T00:00:00Z"},
        ),
        (
            Role.MEDICAL_STAFF,
            "/v1/vaccinations/recoveries",
            {"id_number": LAN_ID, "positive_test_on": "9999-01-01"},
        ),
        (
            Role.CITIZEN,
            "/v1/declarations",
            {"id_number": LAN_ID, "trip": {**TRIP, "travel_date": "9999-12-31"}},
        ),
        (
            Role.CITIZEN,
            "/v1/declarations",
            {"id_number": LAN_ID, "trip": {**TRIP, "origin": "0" * 20}},
        ),
        (
            Role.ADMIN,
            "/v1/risk-levels",
            {"area": "079", "level": 9, "effective_from": "2021-08-01T00:00:00Z", "reason": "x"},
        ),
        (
            Role.ADMIN,
            "/v1/lots",
            {"product": "comirnaty", "lot_number": "PF9", "expires_on": "99999-01-01"},
        ),
    ],
)
def test_absurd_values_are_refused_with_a_clear_problem(
    client: TestClient,
    issuer: TokenIssuer,
    registry: Registry,
    role: Role,
    path: str,
    body: dict[str, Any],
) -> None:
    before = registry.heads()
    refused = client.post(
        path, json=body, headers={"Authorization": f"Bearer {token(issuer, role)}"}
    )
    assert refused.status_code == 422, refused.text[:300]
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"]
    assert problem["detail"]
    assert len(refused.content) < 10_000
    assert registry.heads() == before
