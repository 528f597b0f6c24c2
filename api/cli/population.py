"""`vaxreg population`: synthetic population-register extracts, and importing extracts."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO, TextIO

import typer

from infrastructure.bootstrap import population_context
from infrastructure.population.encoding import Rejected
from infrastructure.population.generator import generate_register, injected_errors
from infrastructure.population.importer import (
    DEFAULT_BATCH_SIZE,
    ExtractReader,
    ImportSummary,
    PopulationImport,
    open_extract,
    rebuild_index,
)
from infrastructure.population.progress import ProgressBar
from infrastructure.population.rows import write_csv, write_ndjson
from infrastructure.settings import load_settings

population_app = typer.Typer(help="The national population register: extracts and imports.")


class Format(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


@population_app.callback()
def _population() -> None:
    """Groups the population-register commands."""


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


@population_app.command("import")
def import_extract(
    source: Annotated[str, typer.Argument(help="Extract file (NDJSON or CSV), or - for stdin.")],
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="Input format; by default taken from the first line."),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="NDJSON file of rejected rows (default: SOURCE.rejects.ndjson, "
            "or rejects.ndjson for stdin)."
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rows per transaction (the event table lock is held for one batch at a time).",
        ),
    ] = DEFAULT_BATCH_SIZE,
    workers: Annotated[
        int,
        typer.Option(min=0, help="Processes parsing and encoding rows (0: in this process)."),
    ] = min(2, os.cpu_count() or 1),
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Import a register extract: new citizens are registered, changed ones corrected.

    Safe to run again, also after an interruption: unchanged rows write nothing. Prints
    the summary as JSON.
    """
    rejects_path = rejects or Path(
        "rejects.ndjson" if source == "-" else f"{source}.rejects.ndjson"
    )
    settings = load_settings()
    population = population_context(settings)
    try:
        with (
            open_extract(source) as stream,
            rejects_path.open("w", encoding="utf-8") as rejects_file,
        ):
            bar = ProgressBar(sys.stderr, _file_size(stream)) if progress else None

            def write_reject(rejected: Rejected) -> None:
                rejects_file.write(json.dumps(rejected.as_dict(), ensure_ascii=False) + "\n")

            def report(summary: ImportSummary, reader: ExtractReader) -> None:
                rejects_file.flush()
                if bar is not None:
                    bar.update(summary.rows, reader.bytes_read)

            importer = PopulationImport(
                population,
                settings.id_key,
                batch_size=batch_size,
                workers=workers,
                on_reject=write_reject,
                on_batch=report,
            )
            summary = importer.run(stream, fmt.value if fmt else None)
            if bar is not None:
                bar.finish()
    finally:
        population.close()
    typer.echo(json.dumps({**summary.as_dict(), "rejects_file": str(rejects_path)}))


def _file_size(stream: BinaryIO) -> int | None:
    info = os.fstat(stream.fileno())
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@population_app.command("rebuild-index")
def rebuild_import_index() -> None:
    """Derive the import's change-detection index again from the population events."""
    settings = load_settings()
    population = population_context(settings)
    try:
        events = rebuild_index(population, settings.id_key)
    finally:
        population.close()
    typer.echo(f"import index rebuilt from {events} events")
