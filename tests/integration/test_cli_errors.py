"""`vaxreg` tells a wrong setting or an unreachable store in one line, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reliability.servers import free_port


def run_vaxreg(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAXREG_")}
    return subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", *args],
        env={**clean, "VAXREG_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    done = run_vaxreg(env, tmp_path, "migrate")
    assert done.returncode == status, done.stderr
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert "Traceback" not in done.stderr
