"""An HTTP test client of the API with a bearer token per role."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.http.roles import Role
from api.http.security import TokenIssuer
from infrastructure.bootstrap import Registry

UNIT = "79-HCM-001"
CHECKPOINT = "HN-CP-07"
CITIZEN_ID = "079190123456"


class Api:
    def __init__(self, client: TestClient, issuer: TokenIssuer) -> None:
        self.client = client
        self.issuer = issuer

    def auth(self, role: Role, subject: str = "", **claims: Any) -> dict[str, str]:
        """A token of `role`: citizens are `CITIZEN_ID`, staff of `UNIT`, officers at
        `CHECKPOINT`, unless `subject` or `claims` say otherwise."""
        subject = subject or {Role.CITIZEN: CITIZEN_ID}.get(role, f"{role.value}-1")
        if role is Role.MEDICAL_STAFF:
            claims.setdefault("unit", UNIT)
        if role is Role.CHECKPOINT_OFFICER:
            claims.setdefault("checkpoint", CHECKPOINT)
        return {"Authorization": f"Bearer {self.issuer.mint(role, subject, **claims)}"}

    def post(
        self,
        path: str,
        role: Role,
        body: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        **claims: Any,
    ) -> httpx.Response:
        response: httpx.Response = self.client.post(
            path, json=body, headers=self.auth(role, **claims) | dict(headers or {})
        )
        return response

    def ok(self, path: str, role: Role, body: dict[str, Any], **claims: Any) -> dict[str, Any]:
        """Post a command that must be accepted; its result."""
        response = self.post(path, role, body, **claims)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()["result"]
        return result


def make_api(registry: Registry, **options: Any) -> Api:
    return Api(
        TestClient(create_app(registry, **options)), TokenIssuer(registry.settings.secret_keys)
    )
