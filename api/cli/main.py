"""`vaxreg`: the command line. Each command is thin: parse, call the application, print."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from api.cli.bench import bench_app
from api.cli.population import population_app
from api.cli.projector import lag, projector, rebuild
from api.cli.reliability import faults, soak
from api.cli.server import serve, token
from application.audit import History
from domain.errors import DomainError
from domain.identity import parse_person_id
from infrastructure.bootstrap import bootstrap, migrate
from infrastructure.settings import SettingsError, load_settings
from infrastructure.unavailable import STORES_DOWN

app = typer.Typer(
    help="vaxreg: national vaccination and citizen-mobility registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve)
app.command("projector")(projector)
app.command("rebuild")(rebuild)
app.command("lag")(lag)
app.command("token")(token)
app.command("faults")(faults)
app.command("soak")(soak)
app.add_typer(population_app, name="population")
app.add_typer(bench_app, name="bench")


def main() -> None:
    """`vaxreg`: a wrong setting or a store that cannot be reached is one line on stderr
    (exit status 2 and 1), not a traceback."""
    try:
        app()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from error
    except STORES_DOWN as error:
        typer.echo(f"error: a store cannot be reached: {error}", err=True)
        raise SystemExit(1) from error


@app.command("migrate")
def migrate_command() -> None:
    """Create the event store tables of every context (safe to run again)."""
    contexts = migrate(load_settings())
    typer.echo(f"tables ready for: {', '.join(contexts)}")


@app.command("history")
def history_command(
    id_number: Annotated[str, typer.Argument(help="ID number, or NATIONALITY:PASSPORT")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="show what was known at this time (UTC)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A citizen's full history across contexts, and the state known at a time."""
    registry = bootstrap(load_settings())
    try:
        history = registry.audit.history(parse_person_id(id_number), _utc(as_of))
    except DomainError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from error
    finally:
        registry.close()
    typer.echo(
        json.dumps(_history_json(history), ensure_ascii=False, indent=2)
        if as_json
        else _history_text(history)
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _history_json(history: History) -> dict[str, object]:
    return {
        "person": history.person,
        "as_of": history.as_of.isoformat() if history.as_of else None,
        "events": [
            {
                "context": e.context,
                "version": e.version,
                "type": e.event_type,
                "recorded_at": e.recorded_at.isoformat(),
                "occurred_at": e.occurred_at,
                "actor": e.actor,
                "data": e.data,
            }
            for e in history.entries
        ],
        "state": history.state,
    }


def _history_text(history: History) -> str:
    lines = [f"History of {history.person}" + (f" as of {history.as_of}" if history.as_of else "")]
    for e in history.entries:
        who = f"{e.actor['user_id']} ({e.actor['role']})" if e.actor else "-"
        lines.append(f"{e.recorded_at:%Y-%m-%d %H:%M:%S}  {e.context:<12} {e.event_type:<40} {who}")
        details = {k: v for k, v in e.data.items() if v not in (None, [], {})}
        if details:
            lines.append(f"    {json.dumps(details, ensure_ascii=False)}")
    lines.append("State:")
    for part, value in history.state.items():
        lines.append(f"  {part}: {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines)
