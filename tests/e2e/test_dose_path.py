"""``POST /v1/vaccinations/doses`` served ahead of the middleware answers as its FastAPI
route does: every request below goes to an app with `DoseRecording` and to one without
(routed through FastAPI's middleware and dependencies), and the answers must match."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Scope

from api.http.app import create_app
from api.http.dose_path import DOSES
from api.http.roles import Role
from api.http.security import TokenIssuer
from application.commands import MAX_REQUEST_ID_LENGTH
from infrastructure.bootstrap import Registry
from tests.e2e.test_api_contract import token
from tests.support.registry import LAN, lan_registry

BODY_LIMIT = 2_000
DOSE: dict[str, Any] = {
    "id_number": str(LAN.person),
    "full_name": LAN.full_name,
    "date_of_birth": LAN.date_of_birth.isoformat(),
    "product": "comirnaty",
    "lot": "PF1",
    "given_at": "2021-08-02T09:00:00+07:00",
    "site": "left_arm",
}
JSON = {"Content-Type": "application/json"}
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class Call:
    role: Role | None
    body: bytes = json.dumps(DOSE).encode()
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _dose(**changes: Any) -> bytes:
    return json.dumps({**DOSE, **changes}).encode()


LONG_KEY = {**JSON, "Idempotency-Key": "k" * (MAX_REQUEST_ID_LENGTH + 1)}
REFUSED = {
    "no token": Call(None),
    "not a bearer token": Call(None, headers={**JSON, "Authorization": "Basic bnVyc2U6eA=="}),
    "a forged token": Call(None, headers={**JSON, "Authorization": "Bearer not.a.token"}),
    "an officer": Call(Role.CHECKPOINT_OFFICER),
    "an officer with no body": Call(Role.CHECKPOINT_OFFICER, b""),
    "an officer with a key too long": Call(Role.CHECKPOINT_OFFICER, headers=LONG_KEY),
    "a key too long and a bad body": Call(Role.MEDICAL_STAFF, _dose(site="nose"), LONG_KEY),
    "no body": Call(Role.MEDICAL_STAFF, b""),
    "broken JSON": Call(Role.MEDICAL_STAFF, b'{"id_number": '),
    "JSON that is not an object": Call(Role.MEDICAL_STAFF, b"[1, 2]"),
    "a text body": Call(Role.MEDICAL_STAFF, headers={"Content-Type": "text/plain"}),
    "no content type": Call(Role.MEDICAL_STAFF, headers={}),
    "JSON of a vendor type": Call(
        Role.MEDICAL_STAFF, _dose(site="nose"), {"Content-Type": "application/vnd.x+json"}
    ),
    "an unknown field": Call(Role.MEDICAL_STAFF, _dose(batch="7")),
    "a missing field": Call(Role.MEDICAL_STAFF, json.dumps({"id_number": "1"}).encode()),
    "a body over the limit": Call(Role.MEDICAL_STAFF, _dose(full_name="x" * BODY_LIMIT)),
    "an unknown citizen": Call(Role.MEDICAL_STAFF, _dose(id_number="001090000000")),
    "a wrong name": Call(Role.MEDICAL_STAFF, _dose(full_name="Trần Văn Bình")),
    "an unknown lot": Call(Role.MEDICAL_STAFF, _dose(lot="NOPE")),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with lan_registry(tmp_path_factory.mktemp("doses")) as registry:
        yield registry


@pytest.fixture(scope="module")
def clients(registry: Registry) -> Iterator[tuple[TestClient, TestClient]]:
    served = create_app(registry, max_body_bytes=BODY_LIMIT)
    routed = create_app(registry, max_body_bytes=BODY_LIMIT)
    assert served.doses is not None
    routed.doses = None
    with TestClient(served) as ahead, TestClient(routed) as behind:
        yield ahead, behind
    for app in (served, routed):
        app.state.access_recorder.close()


def _send(client: TestClient, issuer: TokenIssuer, call: Call) -> httpx.Response:
    headers = dict(call.headers)
    if call.role is not None:
        headers["Authorization"] = f"Bearer {token(issuer, call.role)}"
    response: httpx.Response = client.post(DOSES, content=call.body, headers=headers)
    return response


def _answer(response: httpx.Response) -> tuple[int, str | None, Any]:
    return response.status_code, response.headers.get("content-type"), response.json()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_dose_gets_the_answer_of_the_route(
    clients: tuple[TestClient, TestClient], registry: Registry, case: str
) -> None:
    issuer = TokenIssuer(registry.settings.secret_keys)
    head = registry.immunization.recorder.max_notification_id()
    served, routed = (_answer(_send(client, issuer, REFUSED[case])) for client in clients)

    assert served == routed
    assert served[0] in {401, 403, 404, 413, 422}
    assert served[1] == "application/problem+json"
    assert registry.immunization.recorder.max_notification_id() == head


def test_a_dose_and_its_retries_get_the_answers_of_the_route(
    clients: tuple[TestClient, TestClient], registry: Registry
) -> None:
    issuer = TokenIssuer(registry.settings.secret_keys)
    served, routed = clients
    keyed = Call(Role.MEDICAL_STAFF, headers={**JSON, "Idempotency-Key": "dose-1"})
    other_body = Call(Role.MEDICAL_STAFF, _dose(site="right_arm"), keyed.headers)

    first = _send(served, issuer, keyed)
    retries = [_send(client, issuer, keyed) for client in (served, routed)]
    conflicts = [_send(client, issuer, other_body) for client in (served, routed)]

    assert first.status_code == 201
    assert first.json()["result"]["dose_number"] == 1
    assert [_answer(r) for r in retries] == [_answer(first)] * 2
    assert [r.headers.get("Idempotent-Replayed") for r in retries] == ["true", "true"]
    assert _answer(conflicts[0]) == _answer(conflicts[1])
    assert conflicts[0].status_code == 422


def test_doses_served_ahead_of_the_middleware_are_counted_under_their_route(
    clients: tuple[TestClient, TestClient], registry: Registry
) -> None:
    issuer = TokenIssuer(registry.settings.secret_keys)
    served, _ = clients
    _send(served, issuer, REFUSED["an officer"])
    metrics = served.get("/metrics").text

    assert f'method="POST",route="{DOSES}",status="403"' in metrics


def test_a_client_that_leaves_before_its_body_gets_the_answer_of_the_route(
    clients: tuple[TestClient, TestClient], registry: Registry
) -> None:
    issuer = TokenIssuer(registry.settings.secret_keys)
    authorization = f"Bearer {token(issuer, Role.MEDICAL_STAFF)}".encode()

    async def leave() -> Message:
        return {"type": "http.disconnect"}

    def status_of(client: TestClient) -> int:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def call() -> None:
            await client.app(scope, leave, send)

        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": DOSES,
            "raw_path": DOSES.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"authorization", authorization), *JSON_HEADERS],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }
        asyncio.run(call())
        return int(sent[0]["status"])

    assert [status_of(client) for client in clients] == [400, 400]
