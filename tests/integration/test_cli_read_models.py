"""`vaxreg rebuild` and `vaxreg lag` against PostgreSQL and Redis, as an operator runs them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infrastructure.settings import Settings
from tests.support.cli import run_vaxreg
from tests.support.registry import (
    ADMIN,
    LAN,
    MINH,
    TEST_ID_KEY,
    TEST_SECRET,
    MovableClock,
    build_registry,
    registry_settings,
)


@pytest.fixture
def env(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "VAXREG_DATA_DIR": str(tmp_path / "var"),
        "VAXREG_DATABASE_URL": postgres_url,
        "VAXREG_REDIS_URL": redis_url,
        "VAXREG_REDIS_NAMESPACE": f"{redis_prefix}cli",
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
    }


@pytest.fixture
def registered(env: dict[str, str], tmp_path: Path) -> Settings:
    """A store holding one registered citizen."""
    settings = registry_settings(tmp_path, env["VAXREG_DATABASE_URL"])
    registry = build_registry(settings, MovableClock())
    registry.population.register_citizen(ADMIN, LAN)
    registry.close()
    return settings


def lag(env: dict[str, str]) -> dict[str, Any]:
    measured = run_vaxreg(env, "lag", "--json")
    assert measured.returncode == 0, measured.stderr
    population: dict[str, Any] = json.loads(measured.stdout)["citizens"]["population"]
    return population


def test_rebuild_shows_its_progress_and_switches_then_lag_counts_what_follows(
    env: dict[str, str], registered: Settings
) -> None:
    rebuilt = run_vaxreg(env, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "events/s  ETA" in rebuilt.stdout
    assert rebuilt.stdout.rstrip().endswith("rebuilt and switched: citizens")
    caught_up = lag(env)
    assert (caught_up["events"], caught_up["seconds"]) == (0, 0)
    assert caught_up["position"] == caught_up["head"] > 0

    registry = build_registry(registered, MovableClock(datetime.now(UTC) - timedelta(seconds=5)))
    registry.population.register_citizen(ADMIN, MINH)
    registry.close()
    behind = lag(env)
    assert (behind["position"], behind["events"]) == (caught_up["position"], 1)
    assert 5 <= behind["seconds"] < 60
    text = run_vaxreg(env, "lag").stdout
    assert re.search(r"citizens\s+population\s+position\s+\d+\s+head\s+\d+\s+1 events", text)


def test_rebuild_of_an_unknown_projection_names_the_known_ones(
    env: dict[str, str], registered: Settings
) -> None:
    refused = run_vaxreg(env, "rebuild", "citizen")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: no projection 'citizen' (known: citizens)"
    assert refused.stdout == ""
