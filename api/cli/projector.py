"""`vaxreg projector`, `vaxreg rebuild [NAME]` and `vaxreg lag`: run and inspect the read models.

Register them in the CLI with::

    app.command("projector")(projector)
    app.command("rebuild")(rebuild)
    app.command("lag")(lag)
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from infrastructure.bootstrap import bootstrap
from infrastructure.settings import load_settings
from projections.engine import RebuildProgress
from projections.runtime import ProjectionRuntime


def _runtime() -> ProjectionRuntime:
    settings = load_settings()
    if settings.redis_url is None:
        typer.echo(
            "error: VAXREG_REDIS_URL is not set; the embedded read models live inside "
            "`vaxreg serve`",
            err=True,
        )
        raise typer.Exit(2)
    return ProjectionRuntime.from_registry(bootstrap(settings))


def projector() -> None:
    """Keep the read models up to date until SIGTERM or SIGINT (supervised: a lost
    connection restarts the subscription; lost read models are rebuilt)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    runtime = _runtime()
    stopping = threading.Event()

    def stop(signum: int, _: FrameType | None) -> None:
        typer.echo(f"{signal.Signals(signum).name}: stopping", err=True)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runtime.start()
    typer.echo(f"projector running: {', '.join(p.name for p in runtime.projections)}", err=True)
    try:
        stopping.wait()
    finally:
        runtime.stop()
        runtime.registry.close()


def rebuild(
    name: Annotated[str | None, typer.Argument(help="Projection (default: all).")] = None,
) -> None:
    """Replay the events into fresh keys, then switch readers over atomically."""
    runtime = _runtime()
    try:
        try:
            runtime.named(name)
        except KeyError as error:
            typer.echo(f"error: {error.args[0]}", err=True)
            raise typer.Exit(2) from error
        with typer.progressbar(length=1, label="rebuilding", show_eta=False) as bar:

            def progress(p: RebuildProgress) -> None:
                bar.length = max(p.total, p.done, 1)
                bar.label = f"{p.context:<12} {p.rate:>9,.0f} events/s  ETA {p.eta:>5.0f}s"
                bar.update(p.done - bar.pos)

            names = runtime.rebuild(name, progress)
    finally:
        runtime.registry.close()
    typer.echo(f"rebuilt and switched: {', '.join(names)}")


def lag(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Events and seconds behind the event store, per projection and context."""
    runtime = _runtime()
    try:
        measured = runtime.lag()
    finally:
        runtime.registry.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    name: {ctx: vars(lag) for ctx, lag in per.items()}
                    for name, per in measured.items()
                },
                indent=2,
            )
        )
        return
    for name, per in measured.items():
        for ctx, each in per.items():
            typer.echo(
                f"{name:<10} {ctx:<13} position {each.position:>10}  head {each.head:>10}  "
                f"{each.events:>8} events  {each.seconds:8.3f} s behind"
            )
