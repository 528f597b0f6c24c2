"""Reads of personal data are recorded (who, when, what) without the ID number in clear."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.http.access import WATCHED, Watched, reader_of
from api.http.app import create_app
from api.http.roles import Role
from api.http.security import TokenIssuer
from application.access_log import AccessEntry, AccessLog, AccessRecorder
from domain.base import Actor
from infrastructure.bootstrap import Registry
from tests.support.registry import (
    ADMIN,
    LAN,
    MovableClock,
    build_registry,
    registry_settings,
)

LAN_ID = str(LAN.person)
HISTORY = "/v1/citizens/{id_number}/history"


RECORDERS: list[AccessRecorder] = []


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path, postgres_url), MovableClock())
    registry.population.register_citizen(ADMIN, LAN)
    yield registry
    while RECORDERS:
        RECORDERS.pop().close()
    registry.close()


def _app(
    registry: Registry, watched: Mapping[str, Watched] = WATCHED
) -> tuple[FastAPI, AccessRecorder]:
    app = create_app(registry, watched=watched)
    recorder: AccessRecorder = app.state.access_recorder
    RECORDERS.append(recorder)
    return app, recorder


def _auth(issuer: TokenIssuer, role: Role, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(role, subject)}"}


def test_history_reads_are_recorded_before_the_answer_and_served_to_auditors(
    registry: Registry, postgres_url: str
) -> None:
    app, _ = _app(registry)
    issuer = TokenIssuer(registry.settings.secret_keys)
    auditor = _auth(issuer, Role.AUDITOR, "auditor-7")
    with TestClient(app) as client:
        for headers in (auditor, _auth(issuer, Role.ADMIN, "admin-2"), auditor):
            assert client.get(f"/v1/citizens/{LAN_ID}/history", headers=headers).status_code == 200
        assert client.get("/v1/citizens/001099000001/history", headers=auditor).status_code == 404
        forbidden = client.get(
            f"/v1/citizens/{LAN_ID}/history", headers=_auth(issuer, Role.INTEGRATOR, "i-1")
        )
        assert forbidden.status_code == 403

        by_subject = client.get("/v1/access-log", params={"subject": LAN_ID}, headers=auditor)
        assert by_subject.status_code == 200, by_subject.text
        entries = by_subject.json()["entries"]
        assert [(e["reader"]["user_id"], e["what"]) for e in entries] == [
            ("auditor-7", "history"),
            ("admin-2", "history"),
            ("auditor-7", "history"),
        ]
        pseudonym = registry.ids.pseudonym(LAN.person)
        assert {e["subject"] for e in entries} == {pseudonym}
        by_pseudonym = client.get(
            "/v1/access-log", params={"pseudonym": pseudonym}, headers=auditor
        )
        assert by_pseudonym.json() == by_subject.json()
        by_reader = client.get("/v1/access-log", params={"reader": "auditor-7"}, headers=auditor)
        assert len(by_reader.json()["entries"]) == 2
        later = client.get(
            "/v1/access-log",
            params={"subject": LAN_ID, "since": entries[1]["at"]},
            headers=auditor,
        )
        assert [e["reader"]["user_id"] for e in later.json()["entries"]] == [
            "admin-2",
            "auditor-7",
        ]
        both = client.get(
            "/v1/access-log", params={"subject": LAN_ID, "reader": "x"}, headers=auditor
        )
        assert both.status_code == 422
        admin = _auth(issuer, Role.ADMIN, "admin-2")
        denied = client.get("/v1/access-log", params={"reader": "x"}, headers=admin)
        assert denied.status_code == 403

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT state FROM access_events").fetchall()
    assert len(rows) == 6
    stored = b"".join(bytes(r[0]) for r in rows)
    assert LAN_ID.encode() not in stored
    assert LAN.full_name.encode() not in stored


def test_queued_lookups_are_written_on_a_clean_shutdown(registry: Registry) -> None:
    app, recorder = _app(registry, {HISTORY: Watched("checkpoint_lookup", before_answer=False)})
    recorder.interval = 3600.0
    issuer = TokenIssuer(registry.settings.secret_keys)
    officer = _auth(issuer, Role.AUDITOR, "officer-3")
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get(f"/v1/citizens/{LAN_ID}/history", headers=officer).status_code == 200
    log = AccessLog(registry.settings.application_env("access", False))
    try:
        lookups = log.reads_by("officer-3")
        assert [r.what for r in lookups] == ["checkpoint_lookup"] * 5
        assert log.reads_of(registry.ids.pseudonym(LAN.person)) == []
    finally:
        log.close()


def test_a_read_that_cannot_be_recorded_is_not_answered(registry: Registry) -> None:
    app, recorder = _app(registry)
    recorder.max_pending = 0
    issuer = TokenIssuer(registry.settings.secret_keys)
    with TestClient(app) as client:
        refused = client.get(
            f"/v1/citizens/{LAN_ID}/history", headers=_auth(issuer, Role.AUDITOR, "a-1")
        )
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert "entries" not in refused.text
    assert LAN.full_name not in refused.text


def test_a_citizen_reader_is_recorded_under_a_pseudonym(registry: Registry) -> None:
    reader = reader_of({"role": "citizen", "sub": LAN_ID}, registry.ids)
    assert reader == Actor(registry.ids.pseudonym(LAN.person), "citizen")


def test_queued_reads_are_written_in_one_batch_and_refused_beyond_the_limit(
    registry: Registry,
) -> None:
    recorder = AccessRecorder(registry.access_log, interval=3600.0, max_pending=3)
    RECORDERS.append(recorder)
    reader = Actor("officer-9", "checkpoint_officer", checkpoint="HN-CP-07")
    pseudonym = registry.ids.pseudonym(LAN.person)
    entries = [
        AccessEntry(reader, "checkpoint_lookup", pseudonym, datetime.now(UTC)) for _ in range(4)
    ]
    assert [recorder.queue(entry) for entry in entries] == [True, True, True, False]
    head = registry.access_log.head()
    recorder.flush()
    assert registry.access_log.head() == head + 1
    assert recorder.pending() == 0
    assert [r.what for r in registry.access_log.reads_by("officer-9")] == ["checkpoint_lookup"] * 3
