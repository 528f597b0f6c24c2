"""Settings from the environment: what a wrong value is told."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from domain.checkpoint_policy import DEFAULT_POLICY
from domain.mobility import Verdict
from infrastructure.settings import SettingsError, load_settings

DEFAULT_POLICY_TEXT = (
    resources.files("domain").joinpath("data/checkpoint_policy.json").read_text("utf-8")
)
POSTGRES = {"VAXREG_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/vaxreg"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VAXREG_DATABASE_URL": "mysql://db/vaxreg"}, "VAXREG_DATABASE_URL is postgresql://"),
        (POSTGRES, "VAXREG_SECRET_KEY must be set when using PostgreSQL"),
        ({**POSTGRES, "VAXREG_SECRET_KEY": "s"}, "VAXREG_ID_KEY must be set"),
        ({"VAXREG_SECRET_KEY": "k1:a,b"}, "VAXREG_SECRET_KEY: each key of the list"),
        (
            {"VAXREG_POSTGRES_POOL_SIZE": "two"},
            "VAXREG_POSTGRES_POOL_SIZE must be a positive whole",
        ),
        ({"VAXREG_REBUILD_CITIZENS": "0"}, "VAXREG_REBUILD_CITIZENS must be a positive whole"),
        ({"VAXREG_DECLARATION_HOURS": "nan"}, "VAXREG_DECLARATION_HOURS must be a positive number"),
        ({"VAXREG_REDIS_URL": "localhost:6379"}, "VAXREG_REDIS_URL is redis://"),
        ({"VAXREG_REDIS_URL": "redis://localhost:6379/zero"}, "VAXREG_REDIS_URL is redis://"),
        ({"VAXREG_REDIS_URL": "redis://localhost:63a9"}, "VAXREG_REDIS_URL is redis://"),
        ({"VAXREG_REDIS_NAMESPACE": "vax reg"}, "VAXREG_REDIS_NAMESPACE: invalid namespace"),
        ({"VAXREG_CHECKPOINT_POLICY": "/no/such/policy.json"}, "VAXREG_CHECKPOINT_POLICY: cannot"),
    ],
)
def test_a_wrong_setting_is_named(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"VAXREG_DATA_DIR": str(tmp_path), **env})


def test_numbers_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "VAXREG_DATA_DIR": str(tmp_path),
            "VAXREG_DECLARATION_HOURS": "48.5",
            "VAXREG_POSTGRES_POOL_SIZE": "4",
        }
    )
    assert (settings.declaration_validity.total_seconds(), settings.pool_size) == (174_600, 4)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"rules": []}',
        DEFAULT_POLICY_TEXT.replace('"symptoms"', '"sneezing"'),
        DEFAULT_POLICY_TEXT.replace('"quarantine"', '"detain"'),
    ],
)
def test_a_file_that_is_no_checkpoint_policy_is_refused(text: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(text)
    env = {"VAXREG_DATA_DIR": str(tmp_path), "VAXREG_CHECKPOINT_POLICY": str(policy)}
    with pytest.raises(SettingsError, match=f"VAXREG_CHECKPOINT_POLICY: {policy} is not"):
        load_settings(env)


def test_the_checkpoint_policy_is_read_from_its_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        DEFAULT_POLICY_TEXT.replace('"high_risk_levels": [3, 4]', '"high_risk_levels": [4]')
    )
    env = {"VAXREG_DATA_DIR": str(tmp_path), "VAXREG_CHECKPOINT_POLICY": str(policy)}
    read = load_settings(env).checkpoint_policy
    assert read.high_risk_levels == frozenset({4})
    assert (read.rules, read.otherwise) == (DEFAULT_POLICY.rules, Verdict.PASS)
    assert load_settings({"VAXREG_DATA_DIR": str(tmp_path)}).checkpoint_policy is DEFAULT_POLICY
