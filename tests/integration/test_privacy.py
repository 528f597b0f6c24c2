"""Privacy: no personal data in any log line, and ciphertext at rest with encryption on.

The whole API flow runs against a uvicorn server (two workers, access log on, every
logger at DEBUG, `api.http.access.log_config` with its masking filter), and then the
server's output is searched for every ID number, name, phone number and plate sent.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from eventsourcing.cipher import AESCipher

from api.cli import server as cli_server
from api.http.access import MaskPersonalData, log_config, mask
from api.http.roles import Role
from api.http.security import TokenIssuer
from bench.servers import Server, start_server
from infrastructure.bootstrap import migrate
from infrastructure.settings import load_settings
from reliability import APP_FACTORY
from reliability.servers import ThrowawayRedis
from tests.support.registry import TEST_ID_KEY, TEST_SECRET

PEOPLE = [
    {
        "id_number": "079190123456",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1990-05-01",
        "sex": "female",
        "residence": "079.760.26734",
        "phone": "0912345678",
    },
    {
        "id_number": "001085004321",
        "full_name": "Trần Văn Minh",
        "date_of_birth": "1985-11-20",
        "sex": "male",
        "residence": "001.001.00001",
        "phone": "0987001122",
    },
]
PLATE = "51A-12345"
UNIT = "79-HCM-001"
CHECKPOINT = "HN-CP-07"
SECRETS = [
    *(p[f] for p in PEOPLE for f in ("id_number", "full_name", "phone")),
    "Nguyen Thi Lan",
    PLATE,
]


def server_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "VAXREG_DATABASE_URL": database_url,
        "VAXREG_REDIS_URL": redis_url,
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
        "VAXREG_POSTGRES_POOL_SIZE": "2",
        **extra,
    }


@pytest.fixture
def redis_server() -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis() as server:
        yield server


def _prepare(env: dict[str, str]) -> None:
    settings = load_settings(env)
    migrate(settings)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        _prepare(env)
        config = tmp_path / "log.json"
        config.write_text(json.dumps(log_config("debug")))
        server = start_server(
            APP_FACTORY,
            factory=True,
            workers=2,
            env=env,
            ready_path="/healthz",
            log_path=tmp_path / "server.log",
            extra_args=("--access-log", "--log-level", "debug", "--log-config", str(config)),
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _auth(role: Role, subject: str, **claims: str) -> dict[str, str]:
    issuer = TokenIssuer(load_settings({"VAXREG_SECRET_KEY": TEST_SECRET}).secret_keys)
    return {"Authorization": f"Bearer {issuer.mint(role, subject, **claims)}"}  # type: ignore[arg-type]


def run_flow(base_url: str) -> dict[str, Any]:
    """Every kind of command and read, with some refusals; returns Lan's history."""
    admin = _auth(Role.ADMIN, "admin-1")
    nurse = _auth(Role.MEDICAL_STAFF, "nurse-1", unit=UNIT)
    officer = _auth(Role.CHECKPOINT_OFFICER, "officer-1", checkpoint=CHECKPOINT)
    auditor = _auth(Role.AUDITOR, "auditor-1")
    lan = PEOPLE[0]
    now = datetime.now(UTC)
    with httpx.Client(base_url=base_url, timeout=30) as client:

        def ok(response: httpx.Response, status: int = 201) -> Any:
            assert response.status_code == status, response.text
            return response.json()

        for person in PEOPLE:
            ok(client.post("/v1/citizens", json=person, headers=admin))
        ok(
            client.post(
                "/v1/lots",
                json={"product": "comirnaty", "lot_number": "PF1", "expires_on": "2035-01-01"},
                headers=admin,
            )
        )
        trip = {
            "origin": "079",
            "destination": "001",
            "travel_date": (now + timedelta(days=1)).date().isoformat(),
            "transport": "car",
            "vehicle_plate": PLATE,
        }
        citizen = _auth(Role.CITIZEN, lan["id_number"])
        declared = ok(
            client.post(
                "/v1/declarations",
                json={"id_number": lan["id_number"], "trip": trip},
                headers=citizen,
            )
        )
        check = {
            "id_number": lan["id_number"],
            "verdict": "pass",
            "declaration_id": declared["result"]["declaration_id"],
        }
        ok(client.post("/v1/checks", json=check, headers=officer))
        identity = {k: lan[k] for k in ("id_number", "full_name", "date_of_birth")}
        ok(client.post("/v1/vaccinations/registrations", json=identity, headers=nurse))
        for days_ago in (100, 50):
            dose = {
                **identity,
                "product": "comirnaty",
                "lot": "PF1",
                "given_at": (now - timedelta(days=days_ago)).isoformat(),
                "site": "left_arm",
            }
            ok(client.post("/v1/vaccinations/doses", json=dose, headers=nurse))
        wrong = {**identity, "full_name": "Nguyen Thi Lan", "product": "comirnaty", "lot": "PF1"}
        wrong["given_at"] = now.isoformat()
        assert client.post("/v1/vaccinations/doses", json=wrong, headers=nurse).status_code == 422
        ok(
            client.post(
                f"/v1/citizens/{lan['id_number']}/contact",
                json={"phone": "0900111222"},
                headers=citizen,
            )
        )
        unknown = client.get("/v1/citizens/001099000001/history", headers=auditor)
        assert unknown.status_code == 404
        bad = client.get(f"/v1/citizens/{lan['id_number']}9/history", headers=auditor)
        assert bad.status_code == 422
        ok(client.get("/v1/events", headers=_auth(Role.INTEGRATOR, "integrator-1")), 200)
        history = ok(client.get(f"/v1/citizens/{lan['id_number']}/history", headers=auditor), 200)
        ok(client.get("/v1/access-log", params={"subject": lan["id_number"]}, headers=auditor), 200)
        return history  # type: ignore[no-any-return]


def test_no_personal_data_in_the_logs(
    serve: Any, postgres_url: str, redis_server: ThrowawayRedis
) -> None:
    server = serve(server_env(postgres_url, redis_server.url))
    run_flow(server.url)
    server.stop()
    logs = server.log_tail(10_000_000)
    assert "GET /v1/citizens/***/history" in logs, logs[-3000:]
    assert "DEBUG" in logs
    leaked = [secret for secret in SECRETS if secret in logs]
    assert not leaked, [line for line in logs.splitlines() if any(s in line for s in leaked)][:5]


def test_event_data_at_rest_is_ciphertext_and_everything_still_works(
    serve: Any, postgres_url: str, redis_server: ThrowawayRedis
) -> None:
    key = AESCipher.create_key(16)
    server = serve(server_env(postgres_url, redis_server.url, VAXREG_ENCRYPTION_KEY=key))
    history = run_flow(server.url)

    assert history["state"]["citizen"]["full_name"] == PEOPLE[0]["full_name"]
    assert history["state"]["vaccination"]["status"]["doses"] == 2
    tables = ("population_events", "mobility_events", "immunization_events", "access_events")
    with psycopg.connect(postgres_url) as conn:
        for table in tables:
            states = [bytes(r[0]) for r in conn.execute(f"SELECT state FROM {table}")]
            assert states, table
            for state in states:
                with pytest.raises(UnicodeDecodeError):
                    json.loads(state.decode())
                assert not any(s.encode() in state for s in SECRETS), table


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"GET /v1/citizens/079190123456/history HTTP/1.1" 200',
            '"GET /v1/citizens/***/history HTTP/1.1" 200',
        ),
        ("/v1/citizens/FRA%3AAB123456/contact", "/v1/citizens/***/contact"),
        ("GET /v1/checkpoint/FRA:AB123456 HTTP/1.1", "GET /v1/checkpoint/*** HTTP/1.1"),
        (
            "/v1/checkpoint/by-token/eyJhIjoxfQ.c2ln?wait_for=x",
            "/v1/checkpoint/by-token/***?wait_for=x",
        ),
        ("/v1/access-log?subject=079190123456&limit=5", "/v1/access-log?subject=***&limit=5"),
        ("call 0912345678 or +84912345678", "call *** or ***"),
        (
            "position immunization:42 at 2021-08-02 09:00",
            "position immunization:42 at 2021-08-02 09:00",
        ),
    ],
)
def test_the_mask(text: str, expected: str) -> None:
    assert mask(text) == expected


def test_vaxreg_serve_logs_through_the_mask(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.update(kwargs))
    monkeypatch.delenv("VAXREG_DATABASE_URL", raising=False)
    cli_server.serve()
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    try:
        logging.config.dictConfig(started["log_config"])
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            *("127.0.0.1:5000", "GET", "/v1/checkpoint/079190123456", "1.1", 200),
        )
        logged = capsys.readouterr().out
    finally:
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
    assert "/v1/checkpoint/***" in logged
    assert "079190123456" not in logged


def test_the_filter_masks_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("vaxreg.test.privacy")
    logger.addFilter(MaskPersonalData())
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.info("%s read %s", "auditor-1", "/v1/citizens/079190123456/history")
        try:
            raise ValueError("no citizen 079190123456")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    assert "079190123456" not in text
    assert "auditor-1 read /v1/citizens/***/history" in text
