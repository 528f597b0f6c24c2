"""Running `vaxreg` as an operator does: a process of its own, with only the settings given."""

from __future__ import annotations

import os
import subprocess
import sys


def run_vaxreg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`vaxreg ARGS` with `env` as its only VAXREG_ settings (give VAXREG_DATA_DIR, so
    nothing lands in the working directory)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAXREG_")}
    return subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
