"""`vaxreg population`: synthetic population-register extracts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from infrastructure.population.generator import generate_register, injected_errors
from infrastructure.population.rows import write_csv, write_ndjson

population_app = typer.Typer(help="The national population register: extracts and imports.")


class Format(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


@population_app.callback()
def _population() -> None:
    """Keeps `generate` a subcommand even while it is the only one."""


@population_app.command()
def generate(
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="Rows to write.")],
    seed: Annotated[int, typer.Option(help="Same seed, same file.")] = 1,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.NDJSON,
    errors: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of rows to corrupt, for import tests."),
    ] = 0.0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write; stdout if omitted.")
    ] = None,
    error_log: Annotated[
        Path | None,
        typer.Option(help="Write a JSON object {line number: reason} of the corrupted rows."),
    ] = None,
) -> None:
    """Write a synthetic register extract of COUNT citizens."""
    rows = generate_register(count, seed, errors)
    if output is None:
        written = _write(rows, fmt, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as out:
            written = _write(rows, fmt, out)
    if error_log is not None:
        log = injected_errors(count, seed, errors, fmt.value)
        error_log.write_text(json.dumps({str(k): v.value for k, v in log.items()}, indent=1))
    typer.echo(f"wrote {written} rows ({fmt.value}, seed {seed})", err=True)


def _write(rows: Iterable[Mapping[str, str]], fmt: Format, out: TextIO) -> int:
    return write_csv(rows, out) if fmt is Format.CSV else write_ndjson(rows, out)
