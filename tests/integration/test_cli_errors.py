"""`vaxreg` tells a wrong setting or an unreachable store in one line, without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.servers import free_port
from tests.support.cli import run_vaxreg


@pytest.mark.parametrize(
    ("env", "status", "message"),
    [
        ({"VAXREG_DATABASE_URL": "mysql://db/vaxreg"}, 2, "VAXREG_DATABASE_URL is postgresql://"),
        ({"VAXREG_POSTGRES_POOL_SIZE": "two"}, 2, "VAXREG_POSTGRES_POOL_SIZE must be"),
        (
            {
                "VAXREG_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/vaxreg",
                "VAXREG_SECRET_KEY": "a-secret-of-enough-length",
                "VAXREG_ID_KEY": "an-id-key-of-enough-length",
            },
            1,
            "a store cannot be reached",
        ),
    ],
)
def test_migrate_says_what_is_wrong(
    env: dict[str, str], status: int, message: str, tmp_path: Path
) -> None:
    done = run_vaxreg({"VAXREG_DATA_DIR": str(tmp_path), **env}, "migrate")
    assert done.returncode == status, done.stderr
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert "Traceback" not in done.stderr
