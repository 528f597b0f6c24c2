"""`vaxreg bench`: run benchmark scenarios (`vaxreg bench SCENARIO`) and write the report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from bench import harness

POSTGRES_ENV = "VAXREG_BENCH_POSTGRES_URL"
REDIS_ENV = "VAXREG_BENCH_REDIS_URL"


def _scenario_command(name: str, description: str) -> TyperCommand:
    single = typer.Typer(add_completion=False)

    @single.command(name=name, help=description or f"Runs the {name} scenario.")
    def run_scenario(
        json_output: Annotated[
            bool, typer.Option("--json", help="Print results as JSON lines.")
        ] = False,
        quick: Annotated[
            bool, typer.Option("--quick", help="Small sizes and short runs; judges nothing.")
        ] = False,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Append results to this JSONL file.")
        ] = None,
    ) -> None:
        results, failed = harness.run(
            [part for part in name.split(",") if part],
            quick=quick,
            json=json_output,
            output=output,
            postgres_url=os.environ.get(POSTGRES_ENV, harness.DEFAULT_POSTGRES_URL),
            redis_url=os.environ.get(REDIS_ENV, harness.DEFAULT_REDIS_URL),
        )
        if failed:
            typer.echo(f"failed: {', '.join(failed)}", err=True)
            raise typer.Exit(1)
        if not results:
            typer.echo("no results", err=True)

    command = typer.main.get_command(single)
    if not isinstance(command, TyperCommand):
        raise TypeError(f"expected a single command, got {command!r}")
    return command


class _BenchGroup(TyperGroup):
    """Subcommands plus one command per registered scenario (and `all`).

    Scenario modules are imported only when a command is looked up or listed.
    """

    def _scenarios(self) -> dict[str, str]:
        return {"all": "Runs every scenario, ceilings first."} | {
            name: s.description for name, s in harness.load_scenarios().items()
        }

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *self._scenarios()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        scenarios = self._scenarios()
        names = [part for part in cmd_name.split(",") if part]
        if not names or any(n not in scenarios for n in names):
            return None
        return _scenario_command(cmd_name, scenarios.get(cmd_name, ""))


bench_app = typer.Typer(
    cls=_BenchGroup,
    no_args_is_help=True,
    add_completion=False,
    help=(
        "Benchmarks, each reported as a ratio to a ceiling measured in the same run. "
        f"PostgreSQL from ${POSTGRES_ENV}, Redis from ${REDIS_ENV}."
    ),
)


@bench_app.command("report")
def report(
    results: Annotated[list[Path], typer.Argument(help="JSONL result files.", exists=True)],
    out: Annotated[
        Path, typer.Option("--out", help="Markdown file to write the results section into.")
    ] = Path("docs/performance.md"),
    plots: Annotated[
        Path | None,
        typer.Option("--plots", help="Directory for PNG plots (default: beside --out)."),
    ] = None,
) -> None:
    """Writes the results section and plots of the performance document."""
    from bench.report import write_report

    written = write_report(results, out, plots_dir=plots)
    for path in written:
        typer.echo(str(path))


@bench_app.command("list")
def list_scenarios() -> None:
    """Lists the registered scenarios and ceilings."""
    for name, s in sorted(harness.load_scenarios().items()):
        typer.echo(f"{name:12} {s.description}")
    typer.echo(f"ceilings: {', '.join(sorted(harness.CEILINGS))}")
