"""The query endpoints end to end on PostgreSQL and Redis, with a projector running.

The client runs as a context manager: one event loop for the async Redis reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from api.http.roles import Role
from domain.identity import parse_person_id
from infrastructure.bootstrap import Registry
from projections.runtime import ProjectionRuntime
from projections.stores import RedisStore
from tests.e2e.test_api_flow import LAN, OTHERS, dose_body
from tests.support.api import CHECKPOINT, UNIT, Api, make_api
from tests.support.registry import MovableClock, build_registry, registry_settings


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
    runtime = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}rm"))
    runtime.start()
    api = make_api(
        registry,
        read_models=runtime.read_models,
        lag_source=runtime.lag_seconds,
        redis_client=client,
        redis_prefix=redis_prefix,
    )
    try:
        with api.client:
            yield api
    finally:
        runtime.stop()
        client.close()


def get(
    api: Api, path: str, role: Role, position: str | None = None, **claims: str
) -> httpx.Response:
    path, _, query = path.partition("?")
    params = dict(pair.split("=") for pair in query.split("&")) if query else {}
    if position:
        params["wait_for"] = position
    reply: httpx.Response = api.client.get(path, params=params, headers=api.auth(role, **claims))
    return reply


def declare_lans_trip(api: Api) -> httpx.Response:
    """Lan's health declaration for a trip from Ho Chi Minh City to Hanoi, as answered."""
    trip = {
        "origin": "079.760",
        "destination": "001.001",
        "travel_date": "2021-08-02",
        "transport": "car",
        "checkpoint": CHECKPOINT,
    }
    declared = api.post(
        "/v1/declarations", Role.CHECKPOINT_OFFICER, {"id_number": LAN["id_number"], "trip": trip}
    )
    assert declared.status_code == 201, declared.text
    return declared


def test_register_declare_vaccinate_then_read_every_model(api: Api, clock: MovableClock) -> None:
    for citizen in (LAN, *OTHERS):
        registered = api.post("/v1/citizens", Role.ADMIN, citizen)
        assert registered.status_code == 201
    api.post(
        "/v1/lots",
        Role.ADMIN,
        {"product": "comirnaty", "lot_number": "PF1", "expires_on": "2022-06-01"},
    )
    risk = {"area": "079", "level": 3, "effective_from": "2021-08-01T00:00:00+07:00", "reason": "x"}
    assert api.post("/v1/risk-levels", Role.ADMIN, risk).status_code == 201
    declared = declare_lans_trip(api)
    # Each context's projection goes at its own pace: wait for the register too.
    position = f"{registered.json()['position']},{declared.json()['position']}"

    lan = f"/v1/checkpoint/{LAN['id_number']}"
    found = get(api, lan, Role.CHECKPOINT_OFFICER, position)
    assert found.status_code == 200, found.text
    assert found.headers["content-type"] == "application/json"
    document = found.json()
    assert (document["name"], document["verdict"]) == ("Nguyễn T. L.", "quarantine")
    assert set(document) == {
        "name",
        "birth_year",
        "declaration",
        "vaccination",
        "test",
        "verdict",
        "reasons",
    }
    token = declared.json()["result"]["qr_token"]
    by_token = get(api, f"/v1/checkpoint/by-token/{token}", Role.CHECKPOINT_OFFICER)
    assert by_token.json() == document
    assert get(api, lan, Role.CITIZEN).status_code == 403
    assert api.client.get(lan).status_code == 401

    registration = {
        "id_number": LAN["id_number"],
        "full_name": LAN["full_name"],
        "date_of_birth": LAN["date_of_birth"],
        "priority_group": 3,
    }
    api.post("/v1/vaccinations/registrations", Role.MEDICAL_STAFF, registration)
    screened = api.post(
        "/v1/vaccinations/screenings",
        Role.MEDICAL_STAFF,
        {"id_number": LAN["id_number"], "outcome": "eligible"},
    )
    waiting = get(api, f"/v1/worklists/{UNIT}", Role.MEDICAL_STAFF, screened.json()["position"])
    assert [e["screening"] for e in waiting.json()["awaiting_first_dose"]] == ["eligible"]
    first = api.post(
        "/v1/vaccinations/doses", Role.MEDICAL_STAFF, dose_body("2021-08-02T09:00:00+07:00")
    )
    assert first.status_code == 201, first.text
    position = first.json()["position"]

    lists = get(api, f"/v1/worklists/{UNIT}", Role.MEDICAL_STAFF, position).json()
    assert lists["awaiting_first_dose"] == []
    assert [(d["dose_number"], d["due_on"], d["overdue"]) for d in lists["doses_due"]] == [
        (2, "2021-08-23", False)
    ]
    other_unit = get(api, "/v1/worklists/01-HN-002", Role.MEDICAL_STAFF)
    assert other_unit.status_code == 403
    eligibility = get(api, f"/v1/citizens/{LAN['id_number']}/eligibility", Role.CITIZEN, position)
    assert eligibility.json() == {
        "eligible_now": False,
        "next_dose": 2,
        "kind": "primary",
        "earliest": "2021-08-23",
        "products": ["comirnaty"],
        "reasons": [],
    }
    doses = get(api, "/v1/statistics/doses?from=2021-08-01&to=2021-08-03", Role.AUDITOR, position)
    assert doses.json() == {"days": {"2021-08-02": {"079": {"comirnaty": 1}}}}
    coverage = get(api, "/v1/statistics/coverage", Role.ADMIN).json()
    assert coverage["provinces"]["079"]["18-49"] == {
        "first": 1,
        "complete": 0,
        "booster": 0,
        "dropout": 1.0,
    }
    checkpoints = get(api, "/v1/statistics/checkpoints?from=2021-08-02&to=2021-08-02", Role.ADMIN)
    assert checkpoints.json()["days"]["2021-08-02"][CHECKPOINT] == {"declared": 1}
    arrivals = get(api, "/v1/arrivals/001", Role.ADMIN).json()
    assert [(a["origin"], a["origin_risk_level"]) for a in arrivals["arrivals"]] == [("079.760", 3)]
    assert get(api, "/v1/arrivals/001", Role.CHECKPOINT_OFFICER).status_code == 403

    clock.advance(days=22)
    overdue = get(api, f"/v1/worklists/{UNIT}", Role.ADMIN).json()
    assert overdue["doses_due"][0]["overdue"] is True
    assert get(api, lan, Role.AUDITOR).json()["verdict"] == "no_declaration"
    ahead = get(api, lan, Role.AUDITOR, "immunization:999999")
    assert ahead.status_code == 422
    metrics = api.client.get("/metrics").text
    assert "citizens" in metrics


def test_checkpoint_lookups_are_counted_and_recorded_in_the_access_log(
    api: Api, registry: Registry
) -> None:
    registered = api.post("/v1/citizens", Role.ADMIN, LAN)
    assert registered.status_code == 201
    declared = declare_lans_trip(api)
    position = f"{registered.json()['position']},{declared.json()['position']}"
    token = declared.json()["result"]["qr_token"]
    by_id = get(api, f"/v1/checkpoint/{LAN['id_number']}", Role.CHECKPOINT_OFFICER, position)
    assert by_id.status_code == 200, by_id.text
    by_token = get(api, f"/v1/checkpoint/by-token/{token}", Role.CHECKPOINT_OFFICER)
    assert by_token.status_code == 200, by_token.text
    assert get(api, "/v1/checkpoint/001099000001", Role.CHECKPOINT_OFFICER).status_code == 404
    assert api.client.post(f"/v1/checkpoint/{LAN['id_number']}").status_code == 405

    metrics = api.client.get("/metrics").text
    assert 'route="/v1/checkpoint/{id_number}",status="200"} 1' in metrics
    assert 'route="/v1/checkpoint/{id_number}",status="404"} 1' in metrics
    assert 'route="/v1/checkpoint/by-token/{qr_token}",status="200"} 1' in metrics
    api.client.app.state.access_recorder.flush()  # type: ignore[attr-defined]
    lookups = registry.access_log.reads_by("checkpoint_officer-1")
    pseudonym = registry.ids.pseudonym(parse_person_id(LAN["id_number"]))
    assert [(r.what, r.subject) for r in lookups] == [("checkpoint_lookup", pseudonym)] * 2
    assert lookups[0].reader.checkpoint == CHECKPOINT
