"""Access control: bad tokens, units and checkpoints, citizens' own records, the integrator
feed without identifiers (every event type), and per-subject rate limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.http.roles import Role
from api.http.schemas.events import EVENT_CONTEXTS
from api.http.security import TokenIssuer
from domain.identity import NationalId
from infrastructure.bootstrap import Registry
from infrastructure.keys import KeyRing
from tests.support.api import UNIT, Api, make_api
from tests.support.registry import MovableClock, build_registry, registry_settings

LAN = {
    "id_number": "079190123456",
    "full_name": "Nguyễn Thị Lan",
    "date_of_birth": "1990-05-01",
    "sex": "female",
    "residence": "079.760.26734",
    "phone": "0912345678",
}
MINH = {
    "id_number": "001085004321",
    "full_name": "Trần Văn Minh",
    "date_of_birth": "1985-11-20",
    "sex": "male",
    "residence": "001.001.00001",
    "phone": "0987001122",
}
HOA = {
    "id_number": "048301007777",
    "full_name": "Lê Thị Hoa",
    "date_of_birth": "2001-02-14",
    "sex": "female",
    "residence": "048.490.20194",
    "phone": "0935123456",
}
MINH_DUPLICATE = {**MINH, "id_number": "001085004322", "phone": "0977665544"}
CORRECTED_NAME = "Nguyễn Thị Lan Anh"
PLATE = "51A-12345"
OTHER_UNIT = "01-HN-002"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path), MovableClock())
    yield registry
    registry.close()


@pytest.fixture
def api(registry: Registry) -> Api:
    return make_api(registry)


def _identity(person: dict[str, str]) -> dict[str, str]:
    return {k: person[k] for k in ("id_number", "full_name", "date_of_birth")}


def _dose(person: dict[str, str], given_at: str, lot: str = "PF1") -> dict[str, Any]:
    return {
        **_identity(person),
        "product": "comirnaty",
        "lot": lot,
        "given_at": given_at,
        "site": "left_arm",
    }


def _trip(**extra: str) -> dict[str, Any]:
    return {
        "origin": "079",
        "destination": "001",
        "travel_date": "2021-08-03",
        "transport": "car",
        "vehicle_plate": PLATE,
        **extra,
    }


def _events(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api.client.get("/v1/events", params={"after": cursor, "limit": 7}, headers=headers)
        assert page.status_code == 200, page.text
        events += page.json()["events"]
        if not page.json()["more"]:
            return events
        cursor = page.json()["next"]


def _every_event_type(api: Api) -> None:
    for person in (LAN, MINH, HOA, MINH_DUPLICATE):
        api.ok("/v1/citizens", Role.ADMIN, person)
    lan = LAN["id_number"]
    api.ok(f"/v1/citizens/{lan}/contact", Role.CITIZEN, {"phone": "0900111222"})
    api.ok(f"/v1/citizens/{lan}/residence", Role.ADMIN, {"residence": "001.001.00001"})
    api.ok(
        f"/v1/citizens/{lan}/corrections",
        Role.ADMIN,
        {"reason": "typo", "full_name": CORRECTED_NAME},
    )
    corrected = {**LAN, "full_name": CORRECTED_NAME}
    for lot in ("PF1", "PF2"):
        api.ok(
            "/v1/lots",
            Role.ADMIN,
            {"product": "comirnaty", "lot_number": lot, "expires_on": "2022-06-01"},
        )
    api.ok("/v1/lots/comirnaty/PF2/recall", Role.ADMIN, {"reason": "cold chain broken"})
    for level in (3, 4):
        risk = {"area": "079", "level": level, "effective_from": "2021-08-01T00:00:00+07:00"}
        api.ok("/v1/risk-levels", Role.ADMIN, {**risk, "reason": "cases"})
    declared = api.ok("/v1/declarations", Role.CITIZEN, {"id_number": lan, "trip": _trip()})
    check = {"id_number": lan, "verdict": "pass", "declaration_id": declared["declaration_id"]}
    api.ok("/v1/checks", Role.CHECKPOINT_OFFICER, check)
    api.ok("/v1/vaccinations/registrations", Role.MEDICAL_STAFF, _identity(corrected))
    screening = {"id_number": lan, "outcome": "eligible", "notes": "fine"}
    api.ok("/v1/vaccinations/screenings", Role.MEDICAL_STAFF, screening)
    first = api.ok(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, _dose(corrected, "2021-08-02T09:00:00+07:00")
    )
    dose = first["dose_id"]
    correction = {**_dose(corrected, "2021-08-02T08:00:00+07:00"), "reason": "wrong time"}
    del correction["full_name"], correction["date_of_birth"]
    api.ok(f"/v1/vaccinations/doses/{dose}/corrections", Role.MEDICAL_STAFF, correction)
    reaction = {
        "id_number": lan,
        "onset": "2021-08-02T08:30:00+07:00",
        "severity": "mild",
        "description": "sore arm",
    }
    api.ok(f"/v1/vaccinations/doses/{dose}/adverse-events", Role.MEDICAL_STAFF, reaction)
    api.ok(
        f"/v1/vaccinations/doses/{dose}/void",
        Role.MEDICAL_STAFF,
        {"id_number": lan, "reason": "twice"},
    )
    recovery = {"id_number": lan, "positive_test_on": "2021-07-01"}
    api.ok("/v1/vaccinations/recoveries", Role.MEDICAL_STAFF, recovery)
    api.ok("/v1/vaccinations/registrations", Role.MEDICAL_STAFF, _identity(MINH_DUPLICATE))
    move = {"target": MINH["id_number"], "reason": "duplicate"}
    api.ok(f"/v1/citizens/{MINH_DUPLICATE['id_number']}/move", Role.ADMIN, move)
    api.ok(f"/v1/citizens/{HOA['id_number']}/death", Role.ADMIN, {"died_on": "2021-08-01"})


def test_an_integrator_without_the_identifiers_scope_sees_no_identifiers(api: Api) -> None:
    _every_event_type(api)
    plain = _events(api, api.auth(Role.INTEGRATOR))
    assert {e["type"] for e in plain} == set(EVENT_CONTEXTS)
    text = json.dumps(plain, ensure_ascii=False)
    people = (LAN, MINH, HOA, MINH_DUPLICATE)
    identifiers = {
        *(p[f] for p in people for f in ("id_number", "full_name", "date_of_birth", "phone")),
        CORRECTED_NAME,
        "0900111222",
        PLATE,
        "admin-1",
        "medical_staff-1",
        "checkpoint_officer-1",
    }
    assert not [value for value in identifiers if value in text]
    assert all(e["subject"] is None or set(e["subject"]) == {"pseudonym"} for e in plain)

    scoped = _events(api, api.auth(Role.INTEGRATOR, scopes=["identifiers"]))
    assert [e["id"] for e in scoped] == [e["id"] for e in plain]
    assert LAN["id_number"] in json.dumps(scoped)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_expired_tampered_and_foreign_tokens_are_refused(api: Api, registry: Registry) -> None:
    def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        code: int = api.client.get("/v1/events", headers=headers).status_code
        return code

    good = api.issuer.mint(Role.INTEGRATOR, "integrator-1")
    assert status(good) == 200
    expired = api.issuer.mint(
        Role.INTEGRATOR,
        "integrator-1",
        ttl=timedelta(minutes=5),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    as_auditor = ".".join((header, _b64({**claims, "role": "auditor"}), signature))
    longer = ".".join((header, _b64({**claims, "exp": claims["exp"] + 86400 * 365}), signature))
    foreign = TokenIssuer(KeyRing.from_setting("kid1:another-secret-0123456789abc")).mint(
        Role.INTEGRATOR, "integrator-1"
    )
    unknown_kid = TokenIssuer(KeyRing.from_setting("kid9:test-secret-key-0123456789")).mint(
        Role.INTEGRATOR, "integrator-1"
    )
    unsigned = ".".join((_b64({"alg": "none", "typ": "JWT"}), payload, ""))
    resigned_hs512 = jwt.encode(claims, "guess", algorithm="HS512", headers={"kid": "kid1"})
    for token in (
        expired,
        as_auditor,
        longer,
        foreign,
        unknown_kid,
        unsigned,
        resigned_hs512,
        "",
        "x" * 5000,
    ):
        assert status(token) == 401, token[:40]
    assert api.client.get("/v1/events").status_code == 401


def test_a_command_is_authenticated_before_its_idempotency_key_is_checked(api: Api) -> None:
    too_long = {"Idempotency-Key": "k" * 201}
    response = api.client.post("/v1/vaccinations/doses", json={}, headers=too_long)
    assert response.status_code == 401
    response = api.client.post(
        "/v1/vaccinations/doses", json={}, headers=too_long | api.auth(Role.MEDICAL_STAFF)
    )
    assert response.status_code == 422
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in response.json()["errors"]]


def test_staff_of_one_unit_cannot_write_for_another(api: Api, registry: Registry) -> None:
    api.ok("/v1/citizens", Role.ADMIN, LAN)
    api.ok(
        "/v1/lots",
        Role.ADMIN,
        {"product": "comirnaty", "lot_number": "PF1", "expires_on": "2022-06-01"},
    )
    dose = api.ok(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, _dose(LAN, "2021-08-02T09:00:00+07:00")
    )
    head = registry.heads()
    void = {"id_number": LAN["id_number"], "reason": "twice"}
    correction = {**_dose(LAN, "2021-08-02T08:00:00+07:00"), "reason": "time"}
    del correction["full_name"], correction["date_of_birth"]
    for path, body in (
        (f"/v1/vaccinations/doses/{dose['dose_id']}/void", void),
        (f"/v1/vaccinations/doses/{dose['dose_id']}/corrections", correction),
    ):
        refused = api.post(path, Role.MEDICAL_STAFF, body, unit=OTHER_UNIT)
        assert refused.status_code == 403, refused.text
    smuggled = {**_dose(LAN, "2021-08-02T10:00:00+07:00"), "unit": OTHER_UNIT}
    assert api.post("/v1/vaccinations/doses", Role.MEDICAL_STAFF, smuggled).status_code == 422
    elsewhere = {"id_number": LAN["id_number"], "trip": _trip(checkpoint="HN-CP-01")}
    assert api.post("/v1/declarations", Role.CHECKPOINT_OFFICER, elsewhere).status_code == 403
    assert registry.heads() == head
    record = registry.immunization.vaccination_record(NationalId(LAN["id_number"]))
    assert record is not None
    assert [d.unit for d in record.doses] == [UNIT]


def test_a_citizen_cannot_read_or_write_for_another(api: Api, registry: Registry) -> None:
    for person in (LAN, MINH):
        api.ok("/v1/citizens", Role.ADMIN, person)
    head = registry.heads()
    minh = MINH["id_number"]
    lan = api.auth(Role.CITIZEN)
    declaration = {"id_number": minh, "trip": _trip()}
    assert api.client.post("/v1/declarations", json=declaration, headers=lan).status_code == 403
    contact = api.client.post(f"/v1/citizens/{minh}/contact", json={"phone": None}, headers=lan)
    assert contact.status_code == 403
    for path in (f"/v1/citizens/{minh}/history", f"/v1/citizens/{LAN['id_number']}/history"):
        assert api.client.get(path, headers=lan).status_code == 403
    assert api.client.get("/v1/events", headers=lan).status_code == 403
    assert registry.heads() == head


def test_citizen_declarations_are_rate_limited_per_subject(api: Api) -> None:
    for person in (LAN, MINH):
        api.ok("/v1/citizens", Role.ADMIN, person)
    lan = api.auth(Role.CITIZEN)
    body = {"id_number": LAN["id_number"], "trip": _trip()}
    statuses = [
        api.client.post("/v1/declarations", json=body, headers=lan).status_code for _ in range(21)
    ]
    assert statuses == [201] * 20 + [429]
    limited = api.client.post("/v1/declarations", json=body, headers=api.auth(Role.CITIZEN))
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    minh = api.auth(Role.CITIZEN, MINH["id_number"])
    other = {"id_number": MINH["id_number"], "trip": _trip()}
    assert api.client.post("/v1/declarations", json=other, headers=minh).status_code == 201
    officer = {"id_number": LAN["id_number"], "trip": _trip()}
    assert api.post("/v1/declarations", Role.CHECKPOINT_OFFICER, officer).status_code == 201
