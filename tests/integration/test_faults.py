"""Faults, retries and racing writers against a real API on throwaway servers.

The fault run is `reliability.faults.run_faults` in short; the other tests share one
stack (throwaway PostgreSQL and Redis, the API on two workers, the projector).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.http.roles import Role
from domain.dose_rules import DoseContext, violations
from reliability.faults import Stack, count_store, run_faults, running_stack, seed

UNIT = "79-HCM-001"


def test_nothing_acknowledged_is_lost_under_faults(tmp_path: Path) -> None:
    report = run_faults(
        tmp_path, seconds=20, clients=8, citizens=100, down_seconds=2, out=lambda _: None
    )
    print(report.summary())
    attempts = [a for r in report.resolutions for a in r.attempts]
    assert len(report.injections) == 4
    assert sum(r.acknowledged for r in report.resolutions) > 100
    assert any(a.status == 503 for a in attempts)
    assert report.problems == []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def people(stack: Stack) -> list[Any]:
    return seed(stack, 20, seed_value=3)


def _staff(stack: Stack) -> dict[str, str]:
    token = stack.issuer().mint(Role.MEDICAL_STAFF, "nurse-faults", unit=UNIT)
    return {"Authorization": f"Bearer {token}"}


def _dose(person: Any, given_at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id_number": str(person.id_number),
        "full_name": person.full_name,
        "date_of_birth": person.date_of_birth.isoformat(),
        "product": "comirnaty",
        "lot": "PF-FAULT",
        "given_at": given_at.isoformat(),
        "site": "left_arm",
        **extra,
    }


def test_a_retry_after_a_timed_out_commit_records_nothing_twice(
    stack: Stack, people: list[Any]
) -> None:
    """The first attempts time out at the client while a lock holds the commit back; the
    commit goes through when the lock is released, and the retry answers its result."""
    assert stack.api is not None
    marker = f"retry-{time.monotonic_ns()}"
    body = _dose(people[0], datetime.now(UTC) - timedelta(days=3), vaccinator=marker)
    headers = _staff(stack) | {"Idempotency-Key": marker}
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(stack.database_url) as conn, conn.transaction():
            conn.execute("LOCK TABLE immunization_events IN ACCESS EXCLUSIVE MODE")
            locked.set()
            time.sleep(3)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    with httpx.Client(base_url=stack.api.url) as client:
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                client.post("/v1/vaccinations/doses", json=body, headers=headers, timeout=1.0)
        holder.join()
        answers = [
            client.post("/v1/vaccinations/doses", json=body, headers=headers, timeout=30)
            for _ in range(2)
        ]
    assert [a.status_code for a in answers] == [201, 201], answers[0].text
    assert {a.headers.get("Idempotent-Replayed") for a in answers} == {"true"}
    assert len({a.json()["result"]["dose_id"] for a in answers}) == 1
    found = count_store(stack)
    assert found.doses[marker] == 1
    assert found.dose_ids[marker] == answers[0].json()["result"]["dose_id"]


def test_racing_writers_on_one_citizen_succeed_or_get_a_clear_refusal(
    stack: Stack, people: list[Any]
) -> None:
    assert stack.api is not None
    person = people[1]
    staff = _staff(stack)
    start = datetime.now(UTC) - timedelta(days=200)
    officer = stack.issuer().mint(Role.CHECKPOINT_OFFICER, "officer-race", checkpoint="HN-CP-07")
    trip = {
        "origin": "079",
        "destination": "001",
        "travel_date": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
        "transport": "car",
    }
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/v1/vaccinations/doses", _dose(person, start + timedelta(days=5 * i)), staff)
        for i in range(24)
    ]
    requests += [
        (
            "/v1/declarations",
            {"id_number": str(person.id_number), "trip": trip},
            {"Authorization": f"Bearer {officer}"},
        )
        for _ in range(8)
    ]
    with httpx.Client(base_url=stack.api.url, timeout=30) as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: client.post(r[0], json=r[1], headers=r[2]), requests))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {201, 409, 422}, statuses
    for answer in answers:
        if answer.status_code != 201:
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"]
            assert answer.json()["detail"]
    doses_ok = created(answers, requests, "/v1/vaccinations/doses")
    assert doses_ok >= 1

    registry = stack.registry()
    try:
        record = registry.immunization.vaccination_record(person.id_number)
        assert record is not None
        doses = sorted(record.valid_doses, key=lambda d: d.given_at)
        assert len(doses) == doses_ok
        assert all(not d.deviations for d in doses)
        ctx = DoseContext(
            person.date_of_birth,
            record.screenings,
            record.adverse_events,
            registry.immunization.catalogue,
            datetime.now(UTC),
        )
        for index, dose in enumerate(doses):
            assert violations(dose, doses[:index], ctx) == [], dose
        mobility = registry.mobility.mobility_record(person.id_number)
        assert mobility is not None
        assert len(mobility.declarations) == created(answers, requests, "/v1/declarations")
    finally:
        registry.close()


def created(answers: list[httpx.Response], requests: list[Any], path: str) -> int:
    """How many of the requests to `path` were answered 201."""
    pairs = zip(answers, requests, strict=True)
    return sum(1 for answer, request in pairs if request[0] == path and answer.status_code == 201)


def test_a_lookup_while_the_read_models_are_lost_is_a_503(stack: Stack, people: list[Any]) -> None:
    assert stack.api is not None
    officer = stack.issuer().mint(Role.CHECKPOINT_OFFICER, "officer-lost", checkpoint="HN-CP-07")
    headers = {"Authorization": f"Bearer {officer}"}
    path = f"/v1/checkpoint/{people[2].id_number}"
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        deadline = time.monotonic() + 30
        while client.get(path, headers=headers).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        stack.kill_projector()
        stack.redis.stop()
        stack.redis.start()
        try:
            lost = client.get(path, headers=headers)
            while lost.status_code == 503 and "Retry-After" not in lost.headers:
                lost = client.get(path, headers=headers)
        finally:
            stack.start_projector()
    assert lost.status_code == 503, lost.text
    assert lost.headers["Retry-After"]
