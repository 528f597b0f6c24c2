"""`vaxreg faults` and `vaxreg soak`: the fault-injection and soak runs of `reliability`.

They need a repository checkout (they start the throwaway servers of the test support)
and exit with status 1 when the run's summary reports a problem.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

RUNS_DIR = Path("var/reliability")


def _directory(name: str) -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RUNS_DIR))


def faults(
    quick: Annotated[
        bool, typer.Option("--quick", help="20 s, 8 clients, shorter outages (as in CI).")
    ] = False,
    seconds: Annotated[
        float | None, typer.Option(min=5, help="Length of the load (default 60, quick 20).")
    ] = None,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 16,
) -> None:
    """Record doses and declarations while Redis and PostgreSQL are restarted; count the store."""
    from reliability.faults import run_faults

    directory = _directory("faults")
    typer.echo(f"logs under {directory}")
    report = run_faults(
        directory,
        seconds=seconds or (20.0 if quick else 60.0),
        clients=8 if quick else clients,
        citizens=100 if quick else 300,
        down_seconds=2.0 if quick else 3.0,
        out=typer.echo,
    )
    if not report.ok:
        raise typer.Exit(1)


def soak(
    minutes: Annotated[float, typer.Option(min=0.5, help="Length of the soak.")] = 10.0,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 8,
) -> None:
    """A mixed load for N minutes: no 5xx, memory flat."""
    from reliability.soak import run_soak

    directory = _directory("soak")
    typer.echo(f"logs under {directory}")
    report = run_soak(directory, minutes=minutes, clients=clients, out=typer.echo)
    if not report.ok:
        raise typer.Exit(1)
