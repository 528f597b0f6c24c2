"""The HTTP API end to end on PostgreSQL and Redis: commands, history, feed and stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api.http.roles import Role
from domain.identity import NationalId
from infrastructure.bootstrap import Registry
from projections.runtime import ProjectionRuntime
from projections.stores import RedisStore
from reliability.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.api import CHECKPOINT, UNIT, Api, make_api
from tests.support.registry import MovableClock, build_registry, registry_settings

LAN = {
    "id_number": "079190123456",
    "full_name": "Nguyễn Thị Lan",
    "date_of_birth": "1990-05-01",
    "sex": "female",
    "residence": "079.760.26734",
    "phone": "0912345678",
}
OTHERS = [
    {
        "id_number": "001085004321",
        "full_name": "Trần Văn Minh",
        "date_of_birth": "1985-11-20",
        "sex": "male",
        "residence": "001.001.00001",
    },
    {
        "id_number": "048301007777",
        "full_name": "Lê Thị Hoa",
        "date_of_birth": "2001-02-14",
        "sex": "female",
        "residence": "048.490.20194",
        "phone": "0935123456",
    },
]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str, clock: MovableClock) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path, postgres_url), clock)
    yield registry
    registry.close()


@pytest.fixture
def api(registry: Registry, redis_url: str, redis_prefix: str) -> Iterator[Api]:
    client = redis.Redis.from_url(redis_url)
    yield make_api(registry, redis_client=client, redis_prefix=redis_prefix)
    client.close()


def dose_body(given_at: str, lot: str = "PF1") -> dict[str, Any]:
    return {
        "id_number": LAN["id_number"],
        "full_name": "nguyễn thị  lan",
        "date_of_birth": LAN["date_of_birth"],
        "product": "comirnaty",
        "lot": lot,
        "given_at": given_at,
        "site": "left_arm",
    }


def read_feed(api: Api, headers: dict[str, str], limit: int = 3) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api.client.get(
            "/v1/events", params={"after": cursor, "limit": limit}, headers=headers
        )
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if not body["events"] and not body["more"]:
            return events
        cursor = body["next"]


def read_stream(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, str]]:
    frames: list[dict[str, str]] = []
    with api.client.stream("GET", "/v1/events/stream", params=params, headers=headers) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        for line in reply.iter_lines():
            if not line:
                if frame:
                    frames.append(frame)
                frame = {}
            elif line.startswith(":"):
                frames.append({"comment": line[1:].strip()})
            else:
                key, _, value = line.partition(": ")
                frame[key] = value
    return frames


def test_a_citizen_travels_and_is_vaccinated_and_integrators_see_it_all(
    api: Api, clock: MovableClock, registry: Registry
) -> None:
    for citizen in (LAN, *OTHERS):
        assert api.post("/v1/citizens", Role.ADMIN, citizen).status_code == 201
    lot = api.post(
        "/v1/lots",
        Role.ADMIN,
        {"product": "comirnaty", "lot_number": "PF1", "expires_on": "2022-06-01"},
    )
    assert lot.json()["result"] == {"lot": "PF1", "product": "comirnaty"}
    risk = {
        "area": "079",
        "level": 3,
        "effective_from": "2021-08-01T00:00:00+07:00",
        "reason": "cases",
    }
    assert api.post("/v1/risk-levels", Role.ADMIN, risk).status_code == 201

    trip = {
        "origin": "079",
        "destination": "001",
        "travel_date": "2021-08-02",
        "transport": "car",
        "vehicle_plate": "51A-12345",
    }
    declared = api.post(
        "/v1/declarations", Role.CITIZEN, {"id_number": LAN["id_number"], "trip": trip}
    )
    assert declared.status_code == 201, declared.text
    declaration = declared.json()["result"]
    assert declaration["qr_token"]
    assert declaration["valid_until"].startswith("2021-08-05")
    someone_else = {"id_number": OTHERS[0]["id_number"], "trip": trip}
    assert api.post("/v1/declarations", Role.CITIZEN, someone_else).status_code == 403
    on_the_spot = api.post("/v1/declarations", Role.CHECKPOINT_OFFICER, someone_else)
    assert on_the_spot.status_code == 201
    elsewhere = {**someone_else, "trip": {**trip, "checkpoint": "HN-CP-01"}}
    assert api.post("/v1/declarations", Role.CHECKPOINT_OFFICER, elsewhere).status_code == 403

    check = {
        "id_number": LAN["id_number"],
        "verdict": "pass",
        "reasons": ["valid declaration"],
        "declaration_id": declaration["declaration_id"],
    }
    checked = api.post("/v1/checks", Role.CHECKPOINT_OFFICER, check)
    assert checked.json()["result"] == {"checkpoint": CHECKPOINT, "verdict": "pass"}
    unknown = {**check, "id_number": "001099000001", "declaration_id": None}
    assert api.post("/v1/checks", Role.CHECKPOINT_OFFICER, unknown).status_code == 404

    registration = {
        "id_number": LAN["id_number"],
        "full_name": LAN["full_name"],
        "date_of_birth": LAN["date_of_birth"],
        "priority_group": 3,
    }
    registered = api.post("/v1/vaccinations/registrations", Role.MEDICAL_STAFF, registration)
    assert registered.json()["result"] == {"unit": UNIT}
    screening = {"id_number": LAN["id_number"], "outcome": "eligible"}
    assert api.post("/v1/vaccinations/screenings", Role.MEDICAL_STAFF, screening).status_code == 201
    wrong_name = {**dose_body("2021-08-02T09:00:00+07:00"), "full_name": "Trần Văn Nam"}
    mismatch = api.post("/v1/vaccinations/doses", Role.MEDICAL_STAFF, wrong_name)
    assert (mismatch.status_code, mismatch.json()["code"]) == (422, "identity_mismatch")
    assert mismatch.headers["content-type"] == "application/problem+json"

    first = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, dose_body("2021-08-02T09:00:00+07:00")
    )
    assert first.status_code == 201, first.text
    assert first.json()["result"]["dose_number"] == 1
    clock.advance(days=10)
    too_soon = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, dose_body("2021-08-12T09:00:00+07:00")
    )
    assert (too_soon.status_code, too_soon.json()["code"]) == (422, "interval_too_short")
    clock.advance(days=15)
    second = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, dose_body("2021-08-27T09:00:00+07:00")
    )
    assert second.json()["result"]["dose_number"] == 2
    dose_id = second.json()["result"]["dose_id"]
    void = {"id_number": LAN["id_number"], "reason": "recorded twice"}
    other_unit = api.client.post(
        f"/v1/vaccinations/doses/{dose_id}/void",
        json=void,
        headers=api.auth(Role.MEDICAL_STAFF, unit="01-HN-002"),
    )
    assert other_unit.status_code == 403
    assert registry.immunization.status(NationalId(LAN["id_number"])).doses == 2

    history = api.client.get(
        f"/v1/citizens/{LAN['id_number']}/history", headers=api.auth(Role.AUDITOR)
    )
    assert history.status_code == 200
    types = [e["event_type"] for e in history.json()["entries"]]
    assert types.count("VaccinationRecord.DoseAdministered") == 2
    assert {
        "Citizen.Registered",
        "MobilityRecord.HealthDeclared",
        "MobilityRecord.CheckpointChecked",
        "VaccinationRecord.Registered",
        "VaccinationRecord.Screened",
    } <= set(types)
    assert history.json()["state"]["vaccination"]["status"]["doses"] == 2
    past = api.client.get(
        f"/v1/citizens/{LAN['id_number']}/history",
        params={"as_of": "2021-08-03T00:00:00Z"},
        headers=api.auth(Role.AUDITOR),
    )
    assert past.json()["state"]["vaccination"]["status"]["doses"] == 1
    assert (
        api.client.get(
            "/v1/citizens/001099000001/history", headers=api.auth(Role.AUDITOR)
        ).status_code
        == 404
    )

    stored = sum(
        1
        for app in registry.apps.values()
        for n in app.recorder.select_notifications(1, 10_000)
        if not n.topic.startswith("vaxreg.app:")
    )
    plain = read_feed(api, api.auth(Role.INTEGRATOR))
    assert len(plain) == stored == len({e["id"] for e in plain})
    for context in ("population", "mobility", "immunization"):
        ids = [int(e["id"].split(":")[1]) for e in plain if e["context"] == context]
        assert ids == sorted(ids)
    text = json.dumps(plain, ensure_ascii=False)
    for person in (LAN, *OTHERS):
        for field in ("id_number", "full_name", "date_of_birth", "phone"):
            if field in person:
                assert person[field] not in text, field
    assert "51A-12345" not in text
    assert "integrator-1" not in text
    doses = [e for e in plain if e["type"] == "VaccinationRecord.DoseAdministered"]
    assert len({e["subject"]["pseudonym"] for e in doses}) == 1
    assert "vaccinator" not in doses[0]["data"]["dose"]

    scoped = read_feed(api, api.auth(Role.INTEGRATOR, scopes=["identifiers"]), limit=50)
    registered_events = [e for e in scoped if e["type"] == "Citizen.Registered"]
    assert {e["subject"]["id_number"] for e in registered_events} == {
        p["id_number"] for p in (LAN, *OTHERS)
    }
    assert registered_events[0]["data"]["full_name"] == LAN["full_name"]
    assert [e["id"] for e in scoped] == [e["id"] for e in plain]

    doses_only = api.client.get(
        "/v1/events",
        params={"type": "VaccinationRecord.DoseAdministered"},
        headers=api.auth(Role.INTEGRATOR),
    )
    assert [e["id"] for e in doses_only.json()["events"]] == [e["id"] for e in doses]

    reader = api.auth(Role.INTEGRATOR)
    head = read_stream(api, reader, max_events=4)
    assert [f["event"] for f in head] == [e["type"] for e in plain[:4]]
    assert [json.loads(f["data"])["id"] for f in head] == [e["id"] for e in plain[:4]]
    rest = read_stream(api, reader | {"Last-Event-ID": head[-1]["id"]}, max_events=len(plain) - 4)
    assert [json.loads(f["data"])["id"] for f in rest] == [e["id"] for e in plain[4:]]
    idle = read_stream(api, reader | {"Last-Event-ID": rest[-1]["id"]}, timeout=0.7, heartbeat=0.2)
    assert idle
    assert all(f == {"comment": "heartbeat"} for f in idle)

    metrics = api.client.get("/metrics").text
    assert 'route="/v1/vaccinations/doses",status="201"} 2' in metrics
    assert "vaxreg_http_request_duration_seconds_bucket" in metrics
    assert api.client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"event_store": "ok", "redis": "ok"},
    }


def test_a_retry_answers_the_first_response_and_a_reused_key_is_refused(
    api: Api, registry: Registry
) -> None:
    assert api.post("/v1/citizens", Role.ADMIN, LAN).status_code == 201
    api.post(
        "/v1/lots",
        Role.ADMIN,
        {"product": "comirnaty", "lot_number": "PF1", "expires_on": "2022-06-01"},
    )
    body = dose_body("2021-08-02T09:00:00+07:00")
    first = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, body, headers={"Idempotency-Key": "visit-7"}
    )
    head = registry.immunization.head()
    again = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, body, headers={"Idempotency-Key": "visit-7"}
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["result"] == first.json()["result"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert registry.immunization.head() == head
    reused = api.post(
        "/v1/vaccinations/doses",
        Role.MEDICAL_STAFF,
        dose_body("2021-08-02T10:00:00+07:00"),
        headers={"Idempotency-Key": "visit-7"},
    )
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    twice = api.post("/v1/citizens", Role.ADMIN, LAN)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_registered")


def test_a_store_that_is_down_gives_503_with_retry_after(
    tmp_path: Path, throwaway_postgres: ThrowawayPostgres, throwaway_redis: ThrowawayRedis
) -> None:
    url = throwaway_postgres.create_database()
    registry = build_registry(registry_settings(tmp_path, url), MovableClock())
    client = redis.Redis.from_url(throwaway_redis.url, socket_timeout=1, socket_connect_timeout=1)
    api = make_api(registry, redis_client=client)
    try:
        assert api.post("/v1/citizens", Role.ADMIN, LAN).status_code == 201
        throwaway_redis.stop()
        not_ready = api.client.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["unavailable"]) == (503, ["redis"])
        assert not_ready.headers["Retry-After"] == "5"
        throwaway_postgres.stop()
        started = time.monotonic()
        down = api.post("/v1/citizens", Role.ADMIN, OTHERS[0])
        feed = api.client.get("/v1/events", headers=api.auth(Role.INTEGRATOR))
        assert (down.status_code, feed.status_code) == (503, 503)
        assert down.headers["Retry-After"]
        assert down.json()["code"] == "service_unavailable"
        assert api.client.get("/readyz").json()["unavailable"] == ["event_store", "redis"]
        assert time.monotonic() - started < 30
    finally:
        client.close()
        registry.close()
        throwaway_postgres.start()


def test_checkpoint_lookups_answer_503_while_redis_is_down_and_recover_after(
    registry: Registry, throwaway_redis: ThrowawayRedis
) -> None:
    client = redis.Redis.from_url(throwaway_redis.url, socket_timeout=1, socket_connect_timeout=1)
    runtime = ProjectionRuntime(registry, RedisStore(client, "rm"))
    api = make_api(registry, read_models=runtime.read_models, redis_client=client)
    path = f"/v1/checkpoint/{LAN['id_number']}"
    officer = api.auth(Role.CHECKPOINT_OFFICER, checkpoint=CHECKPOINT)
    try:
        with api.client:
            assert api.post("/v1/citizens", Role.ADMIN, LAN).status_code == 201
            runtime.catch_up()
            assert api.client.get(path, headers=officer).status_code == 200
            throwaway_redis.stop()
            down = api.client.get(path, headers=officer)
            assert (down.status_code, down.json()["code"]) == (503, "service_unavailable")
            assert down.headers["Retry-After"]
            throwaway_redis.start()
            emptied = api.client.get(path, headers=officer)
            assert (emptied.status_code, emptied.headers["Retry-After"]) == (503, "2")
            runtime.catch_up()
            back = api.client.get(path, headers=officer)
            assert (back.status_code, back.json()["name"]) == (200, "Nguyễn T. L.")
    finally:
        client.close()
