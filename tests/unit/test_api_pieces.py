"""Pieces of the HTTP API tested alone: feed cursors, metrics text, the serve and token commands."""

from __future__ import annotations

import asyncio
import base64
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli.server import demo_tokens, load_demo, serve, token
from api.http.command_threads import CommandThreads
from api.http.metrics import MetricsRegistry
from api.http.roles import Role
from api.http.routers.events import decode_cursor, encode_cursor
from api.http.security import (
    AuthenticationError,
    MemoryRevocationList,
    TokenIssuer,
    TokenVerifier,
)
from domain.errors import InvalidValue
from infrastructure.bootstrap import bootstrap
from infrastructure.keys import KeyRing
from tests.support.registry import TEST_ID_KEY, TEST_SECRET, registry_settings


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    positions = {"population": 12, "mobility": 0, "immunization": 40}
    assert decode_cursor(encode_cursor(positions)) == positions
    assert decode_cursor(None) == {"population": 0, "mobility": 0, "immunization": 0}
    forged = base64.urlsafe_b64encode(b'{"population": -1}').decode()
    for bad in (forged, "not a cursor", "e30", "x" * 500):
        with pytest.raises(InvalidValue):
            decode_cursor(bad)


def test_metrics_are_prometheus_text_with_cumulative_buckets_and_lag() -> None:
    metrics = MetricsRegistry()
    metrics.observe("GET", "/v1/events", 200, 0.003)
    metrics.observe("GET", "/v1/events", 200, 0.2)
    text = metrics.render(lambda: {"checkpoint": {"mobility": 0.25}})
    assert 'vaxreg_http_requests_total{method="GET",route="/v1/events",status="200"} 2' in text
    assert 'route="/v1/events",le="0.005"} 1' in text
    assert 'route="/v1/events",le="+Inf"} 2' in text
    assert 'vaxreg_projection_lag_seconds{projection="checkpoint",context="mobility"} 0.25' in text


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("serve")(serve)
    app.command("token")(token)
    return app


def test_token_mints_a_token_the_api_accepts(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VAXREG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VAXREG_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("VAXREG_ID_KEY", TEST_ID_KEY)
    runner = CliRunner()
    minted = runner.invoke(
        cli, ["token", "--role", "medical_staff", "--subject", "nurse-9", "--unit", "79-HCM-001"]
    )
    assert minted.exit_code == 0, minted.output
    settings = registry_settings(tmp_path)
    verifier = TokenVerifier(settings.secret_keys, revocations=MemoryRevocationList())
    principal = verifier.verify(minted.output.strip())
    assert (principal.role, principal.unit) == (Role.MEDICAL_STAFF, "79-HCM-001")
    refused = runner.invoke(cli, ["token", "--role", "medical_staff", "--subject", "nurse-9"])
    assert refused.exit_code == 2


def test_the_demo_loads_once_and_prints_a_token_per_role(tmp_path: Path) -> None:
    settings = registry_settings(tmp_path)
    loaded = load_demo(settings, count=20)
    assert loaded > 15
    assert load_demo(settings, count=20) == loaded
    registry = bootstrap(settings)
    try:
        assert registry.immunization.lot("comirnaty", "PF-DEMO-1").product == "comirnaty"
    finally:
        registry.close()
    lines = "\n".join(demo_tokens(settings, "079190123456"))
    for role in Role:
        assert role.value in lines


def test_a_remembered_token_is_refused_once_revoked_here_or_expired() -> None:
    keyring = KeyRing.from_setting(TEST_SECRET)
    moment = [datetime.now(UTC)]
    revocations = MemoryRevocationList()
    verifier = TokenVerifier(keyring, revocations=revocations, now=lambda: moment[0])
    issuer = TokenIssuer(keyring, now=lambda: moment[0])
    kept, revoked = (issuer.mint(Role.AUDITOR, f"a-{n}", ttl=timedelta(minutes=5)) for n in (1, 2))
    assert verifier.remembered(kept) is None
    assert verifier.verify_recent(kept).subject == "a-1"
    assert verifier.remembered(kept) == verifier.verify(kept)
    assert verifier.verify_recent(revoked).subject == "a-2"
    verifier.revoke(verifier.verify(revoked))
    with pytest.raises(AuthenticationError, match="revoked"):
        verifier.verify_recent(revoked)
    revocations.revoke(verifier.verify(kept).token_id, moment[0] + timedelta(minutes=5))
    assert verifier.verify_recent(kept).subject == "a-1"
    moment[0] += timedelta(minutes=6)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify_recent(kept)


def test_command_threads_hand_back_results_and_errors_to_the_loop() -> None:
    threads = CommandThreads(2, name="test-command")

    def fail() -> None:
        raise InvalidValue("refused")

    async def run() -> tuple[list[str], InvalidValue]:
        names = await asyncio.gather(
            *(threads.run(lambda: threading.current_thread().name) for _ in range(20))
        )
        with pytest.raises(InvalidValue) as refused:
            await threads.run(fail)
        return names, refused.value

    names, error = asyncio.run(run())
    assert set(names) <= {"test-command_0", "test-command_1"}
    assert error.message == "refused"
