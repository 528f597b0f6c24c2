"""`vaxreg bench import`: the population-register import into PostgreSQL.

For each size, a fresh database gets a synthetic extract through ``vaxreg population
import`` (a subprocess, as an operator runs it), then the same extract again (the
re-import finds every row unchanged); 100k citizens three times over, in fresh databases,
and the median run counts. Each figure is citizens/s next to the binary COPY
rate of event-store-shaped rows measured in the same run, with the importer's peak
memory (resident set of the importing process and its workers) and where the time went:
the importer's own stage timings, and the CPU time per citizen of the importing process,
its workers and the PostgreSQL backends of the database (other work on the machine
stretches wall times, much less CPU times).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import BenchContext, scenario
from bench.results import Result, ScalePoint
from infrastructure.bootstrap import migrate
from infrastructure.population.generator import generate_register
from infrastructure.population.rows import write_ndjson
from infrastructure.settings import load_settings

GOAL_RATE = 30_000
GOAL_RSS_MB = 500
WORKERS = 2
REPEATED_UP_TO = 100_000
"""Sizes up to this are imported `ctx.repeats` times into fresh databases and the median
run reported: a run of a few seconds moves with whatever else the machine does."""
DISK_BYTES_PER_CITIZEN = 2_000
"""Extract, events, indexes and WAL, with room to spare."""


def _database_url(ctx: BenchContext, dbname: str) -> str:
    params = ctx.postgres_env(dbname)
    user, host, port = params["POSTGRES_USER"], params["POSTGRES_HOST"], params["POSTGRES_PORT"]
    password = f":{params['POSTGRES_PASSWORD']}" if params["POSTGRES_PASSWORD"] else ""
    return f"postgresql://{user}{password}@{host}:{port}/{dbname}"


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """A process and its descendants, from /proc."""
    found = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found.append(current)
        pending.extend(int(child) for child in children)
    return found


def _rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class _CpuMeter:
    """The CPU seconds of the importer, its workers and the database's backends, sampled
    until each exits (a process's last sample stands for its total)."""

    def __init__(self, importer: int, dsn: str, dbname: str) -> None:
        self.importer = importer
        self._connection = psycopg.connect(dsn, autocommit=True)
        self._dbname = dbname
        self._start = self._backend_seconds()
        self.seconds: dict[str, dict[int, float]] = {"importer": {}, "workers": {}, "postgres": {}}

    def _backends(self) -> list[int]:
        rows = self._connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self._dbname,),
        )
        return [pid for (pid,) in rows]

    def _backend_seconds(self) -> dict[int, float]:
        return {p: s for p in self._backends() if (s := _cpu_seconds(p)) is not None}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                self.seconds["importer" if pid == self.importer else "workers"][pid] = seconds
        for pid, seconds in self._backend_seconds().items():
            self.seconds["postgres"][pid] = seconds - self._start.get(pid, 0.0)

    def per_row_us(self, rows: int) -> dict[str, float]:
        self._connection.close()
        return {
            name: round(sum(by_pid.values()) / max(rows, 1) * 1e6, 1)
            for name, by_pid in self.seconds.items()
        }


_Run = tuple[dict[str, Any], float, float]
"""An import's summary, wall seconds and peak RSS (MB)."""


def _run_import(env: dict[str, str], extract: Path, dsn: str, dbname: str) -> _Run:
    """The summary, wall seconds and peak RSS (MB) of one `vaxreg population import`.

    The summary gets the 1-minute load average at the start and the end, since other
    work on the machine shows in every stage's time, and the CPU time per citizen.
    """
    command = [
        sys.executable,
        "-c",
        "from api.cli.main import main; main()",
        "population",
        "import",
        str(extract),
        "--no-progress",
        "--workers",
        str(WORKERS),
        "--rejects",
        str(extract.with_suffix(".rejects.ndjson")),
    ]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    meter = _CpuMeter(process.pid, dsn, dbname)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.2):
            pids = _tree(process.pid)
            peak = max(peak, _rss_bytes(pids))
            meter.sample(pids)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"the import failed ({process.returncode}): {err.decode()[-2000:]}")
    summary: dict[str, Any] = json.loads(out)
    summary["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    summary["cpu_us_per_row"] = meter.per_row_us(summary["rows"])
    return summary, seconds, peak / 2**20


def _breakdown(timings: dict[str, float]) -> dict[str, float]:
    """Each stage's share of the stage total, for the profile table."""
    total = sum(timings.values()) or 1.0
    return {stage: round(seconds / total, 3) for stage, seconds in timings.items()}


def _result(
    ctx: BenchContext,
    name: str,
    size: int,
    runs: list[_Run],
    copy: Result,
    scaling: list[ScalePoint],
) -> Result:
    """The run of median time (the highest peak RSS of all runs)."""
    summary, seconds, _ = sorted(runs, key=lambda run: run[1])[len(runs) // 2]
    rss_mb = max(run[2] for run in runs)
    rate = summary["rows"] / seconds
    scaling.append(ScalePoint(size=size, seconds=round(seconds, 2), rate=round(rate, 1)))
    return Result(
        name,
        rate,
        "citizens/s",
        ceiling=copy.value,
        ceiling_unit="rows/s (binary COPY, same run)",
        goal=f">= {GOAL_RATE:,} citizens/s with peak RSS < {GOAL_RSS_MB} MB",
        met=None if ctx.quick else rate >= GOAL_RATE and rss_mb < GOAL_RSS_MB,
        details={
            "citizens": size,
            "seconds": round(seconds, 2),
            "runs_seconds": [round(run[1], 2) for run in runs],
            "peak_rss_mb": round(rss_mb, 1),
            "longest_lock_s": summary["longest_lock_seconds"],
            "load_average_1m": summary["load_average"],
            "cpu_us_per_row": summary["cpu_us_per_row"],
            "copy_ceiling_ratio": round(rate / copy.value, 3),
            "workers": WORKERS,
            "created": summary["created"],
            "unchanged": summary["unchanged"],
            "events": summary["events"],
            "stage_seconds": summary["timings"],
            "stage_share": _breakdown(summary["timings"]),
            "scaling": list(scaling),
        },
    )


@scenario("import", "Population-register import into PostgreSQL: citizens/s next to COPY")
def import_rate(ctx: BenchContext) -> list[Result]:
    copy = ctx.ceiling("copy_rate")
    sizes = [20_000] if ctx.quick else [100_000, 1_000_000, 5_000_000]
    scratch = ctx.output_dir / f"import-{ctx.run_id}"
    scratch.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    imports: list[ScalePoint] = []
    reimports: list[ScalePoint] = []
    try:
        for size in sizes:
            free = shutil.disk_usage(scratch).free
            if free < size * DISK_BYTES_PER_CITIZEN:
                ctx.log(f"skipping {size:,} citizens: {free / 2**30:.1f} GiB free")
                continue
            extract = scratch / f"register-{size}.ndjson"
            with extract.open("w", encoding="utf-8") as out:
                write_ndjson(generate_register(size, seed=size), out)
            runs: dict[str, list[_Run]] = {"import": [], "import.reimport": []}
            for _ in range(ctx.repeats if size <= REPEATED_UP_TO else 1):
                with ctx.temp_database() as dbname:
                    env = {
                        **os.environ,
                        "VAXREG_DATABASE_URL": _database_url(ctx, dbname),
                        "VAXREG_DATA_DIR": str(scratch / "var"),
                        "VAXREG_SECRET_KEY": "bench:import-benchmark-secret-key-0123456789",
                        "VAXREG_ID_KEY": "import-benchmark-id-key-0123456789",
                    }
                    migrate(load_settings(env))
                    for name, name_runs in runs.items():
                        ctx.log(f"{name} of {size:,} citizens")
                        name_runs.append(_run_import(env, extract, ctx.postgres_dsn(), dbname))
            for (name, name_runs), series in zip(runs.items(), (imports, reimports), strict=True):
                results.append(ctx.record(_result(ctx, name, size, name_runs, copy, series)))
            extract.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results
