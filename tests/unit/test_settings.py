"""Settings from the environment: what a wrong value is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.settings import SettingsError, load_settings

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
