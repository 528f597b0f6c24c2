"""`vaxreg history` prints a citizen's complete history, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.main import app
from application.commands import Request
from tests.support.registry import (
    ADMIN,
    LAN,
    LAN_AT_SITE,
    NURSE,
    TEST_ID_KEY,
    TEST_SECRET,
    MovableClock,
    build_registry,
    dose,
    registry_settings,
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_history_command_prints_every_event_and_the_state(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    clock = MovableClock()
    registry = build_registry(registry_settings(tmp_path, url), clock)
    registry.immunization.register_lot(
        ADMIN, "spikevax", "MD1", clock.now.date().replace(year=2022)
    )
    registry.population.register_citizen(ADMIN, LAN)
    registry.immunization.record_dose(
        Request(NURSE), LAN_AT_SITE, dose("spikevax", "MD1", clock.now)
    )
    registry.close()
    env = {
        "VAXREG_DATA_DIR": str(tmp_path / "var"),
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
    } | ({"VAXREG_DATABASE_URL": url} if url else {})

    text = CliRunner().invoke(app, ["history", str(LAN.person)], env=env)
    as_json = CliRunner().invoke(app, ["history", str(LAN.person), "--json"], env=env)
    unknown = CliRunner().invoke(app, ["history", "001099000001"], env=env)

    assert text.exit_code == 0, text.output
    assert "Citizen.Registered" in text.output
    assert "VaccinationRecord.DoseAdministered" in text.output
    assert "nurse-1 (medical_staff)" in text.output
    history = json.loads(as_json.output)
    assert [e["type"] for e in history["events"]] == [
        "Citizen.Registered",
        "VaccinationRecord.Opened",
        "VaccinationRecord.DoseAdministered",
    ]
    assert history["events"][0]["data"]["residence"] == "079.760.26734"
    assert history["state"]["vaccination"]["status"]["status"] == "partially_vaccinated"
    assert unknown.exit_code == 2
    assert "no citizen with this ID number" in unknown.output
