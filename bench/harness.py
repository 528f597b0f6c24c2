"""The scenario registry and runner behind `vaxreg bench`.

Every performance figure is reported as a ratio to a ceiling measured in the same run.

Adding a scenario
-----------------
Put a module in `bench/scenarios/` (the harness imports every module there) and register
a function that takes a `BenchContext` and returns one `Result` or a list of them::

    from bench.harness import BenchContext, scenario
    from bench.loadgen import Request, run_closed_loop
    from bench.results import Result

    @scenario("doses", "POST /v1/doses at rising concurrency")
    def doses(ctx: BenchContext) -> Result:
        ceiling = ctx.ceiling("library_save_rate")     # measured once per run, recorded
        series = []
        with ctx.temp_database() as dbname, ctx.server(
            "api.http.app:create_app", factory=True, workers=2,
            env={**ctx.postgres_env(dbname), "VAXREG_REDIS_PREFIX": ctx.redis_key("")},
        ) as server:
            for concurrency in (1, 8, 32) if ctx.quick else (1, 4, 16, 64, 256):
                load = run_closed_loop(
                    server.url + "/v1/doses", lambda i: Request("POST", "/v1/doses", body(i)),
                    concurrency=concurrency, duration_s=ctx.seconds(10, 1),
                )
                series.append(load.series_point(concurrency))
        best = max(series, key=lambda p: p["throughput"])
        return Result(
            "doses", best["throughput"], "doses/s",
            ceiling=ceiling.value, ceiling_unit=ceiling.unit,
            p50_ms=best["p50_ms"], p95_ms=best["p95_ms"], p99_ms=best["p99_ms"],
            goal=">= 2x the one-save-per-command ceiling",
            met=None if ctx.quick else best["throughput"] >= 2 * ceiling.value,
            details={"series": series},
        )

Read loads go through `bench.loadgen.run_wrk` (random paths from a list, e.g.
`/v1/checkpoint/<id>`); POST loads and arrival-rate loads through `run_closed_loop` /
`run_open_loop`. Run it with `vaxreg bench doses [--quick] [--json] [--output F.jsonl]`.

Rules:

- `--quick` runs finish in well under a minute and judge nothing (`met=None`). Use
  `ctx.seconds(full, quick)` and `ctx.size(full, quick)` for durations and data sizes,
  and `ctx.median_of(measure, value)` to repeat a measurement (3 times, once if quick)
  and keep the median run, as the ceilings do.
- Scratch resources: `ctx.temp_database()` (a fresh PostgreSQL database, dropped after),
  `ctx.redis_key(name)` for every Redis key (the run's prefix is deleted at the end),
  `ctx.server(app, ...)` for uvicorn processes (stopped after, log in the output dir).
- `ctx.record(result)` emits a result early (e.g. one per data size); returned results
  are recorded too, once each.
- Curves go in `details` under `series`, `timeline` or `scaling` (see `bench.results`);
  `vaxreg bench report` plots them.
- Ceilings (see `bench.ceilings`): `asgi_redis_get`, `asgi_pipelined_get`, `python_loadgen`,
  `library_save_rate`, `copy_rate`, `decode_rate`.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import secrets
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.results import Result, append_results, format_result, machine_info
from bench.servers import Server, running_server

T = TypeVar("T")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

ScenarioOutput = Result | Iterable[Result] | None
ScenarioFunction = Callable[["BenchContext"], ScenarioOutput]
CeilingFunction = Callable[["BenchContext"], Result]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    function: ScenarioFunction


SCENARIOS: dict[str, Scenario] = {}
CEILINGS: dict[str, CeilingFunction] = {}


def scenario(name: str, description: str = "") -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Registers a scenario under `name` (`all` is reserved)."""

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if name == "all":
            raise ValueError("'all' is not a scenario name")
        if name in SCENARIOS and SCENARIOS[name].function is not function:
            raise ValueError(f"scenario {name!r} is registered twice")
        SCENARIOS[name] = Scenario(name, description or (function.__doc__ or "").strip(), function)
        return function

    return register


def ceiling(name: str) -> Callable[[CeilingFunction], CeilingFunction]:
    """Registers a ceiling measurement, run through `BenchContext.ceiling`."""

    def register(function: CeilingFunction) -> CeilingFunction:
        CEILINGS[name] = function
        return function

    return register


IMPORT_ERRORS: dict[str, str] = {}
"""Scenario modules that failed to import, with their tracebacks (reported as failures)."""


def load_scenarios() -> dict[str, Scenario]:
    """Imports the built-in ceilings and every module of `bench.scenarios`.

    A module that fails to import is kept in `IMPORT_ERRORS` so the others still run.
    """
    importlib.import_module("bench.ceilings")
    package = importlib.import_module("bench.scenarios")
    for module in pkgutil.iter_modules(package.__path__, "bench.scenarios."):
        if module.name in IMPORT_ERRORS:
            continue
        try:
            importlib.import_module(module.name)
        except Exception:
            IMPORT_ERRORS[module.name] = traceback.format_exc()
    return SCENARIOS


def _server_versions(postgres_url: str, redis_url: str) -> dict[str, str]:
    versions = {}
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(postgres_url, connect_timeout=3) as conn,
    ):
        row = conn.execute("SHOW server_version").fetchone()
        if row:
            versions["postgresql_server"] = str(row[0])
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url, socket_timeout=3)
        versions["redis_server"] = str(client.info("server")["redis_version"])
        client.close()
    return versions


@dataclass
class BenchContext:
    """What a scenario gets: settings, scratch resources that are cleaned up, and output."""

    quick: bool
    postgres_url: str
    redis_url: str
    output_dir: Path
    emit: Callable[[Result], None] = lambda result: None
    log_stream: TextIO = field(default_factory=lambda: sys.stderr)
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    machine: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    _ceilings: dict[str, Result] = field(default_factory=dict)
    _cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def key_prefix(self) -> str:
        return f"vaxreg_bench_{self.run_id}:"

    def redis_key(self, name: str) -> str:
        return self.key_prefix + name

    def redis(self) -> redis.Redis:
        """A synchronous client, closed at the end of the run."""
        client = redis.Redis.from_url(self.redis_url)
        self._cleanup.callback(client.close)
        return client

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=self.log_stream, flush=True)

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @property
    def repeats(self) -> int:
        """How many times a measurement is repeated (its median is reported): 3, 1 if quick."""
        return 1 if self.quick else 3

    def median_of(
        self, measure: Callable[[], T], value: Callable[[T], float]
    ) -> tuple[T, list[float]]:
        """Runs `measure` `repeats` times; returns the run with the median `value`, and
        every run's value in the order measured.
        """
        runs = [measure() for _ in range(self.repeats)]
        values = [value(r) for r in runs]
        return sorted(runs, key=value)[len(runs) // 2], values

    def record(self, result: Result) -> Result:
        """Adds a result to the run (once) and emits it."""
        if any(result is r for r in self.results):
            return result
        if not result.machine:
            result.machine = self.machine
        self.results.append(result)
        self.emit(result)
        return result

    def ceiling(self, name: str) -> Result:
        """The named ceiling, measured (and recorded) the first time it is asked for."""
        if name not in self._ceilings:
            importlib.import_module("bench.ceilings")
            if name not in CEILINGS:
                raise KeyError(f"no ceiling {name!r}; known: {', '.join(sorted(CEILINGS))}")
            self.log(f"measuring ceiling {name}")
            self._ceilings[name] = self.record(CEILINGS[name](self))
        return self._ceilings[name]

    def postgres_dsn(self, dbname: str | None = None) -> str:
        """A conninfo string for `dbname` on the benchmark server (its maintenance db if None)."""
        if dbname is None:
            return self.postgres_url
        return make_conninfo(self.postgres_url, dbname=dbname)

    def postgres_env(self, dbname: str) -> dict[str, str]:
        """eventsourcing settings for a PostgreSQL database on the benchmark server."""
        params = conninfo_to_dict(self.postgres_url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", "5432")),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "CREATE_TABLE": "y",
        }
        return env

    @contextlib.contextmanager
    def temp_database(self) -> Iterator[str]:
        """A fresh database `vaxreg_bench_<hex>`, dropped (forcibly) afterwards."""
        dbname = f"vaxreg_bench_{secrets.token_hex(4)}"
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        try:
            yield dbname
        finally:
            with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )

    @contextlib.contextmanager
    def server(self, app: str, **kwargs: Any) -> Iterator[Server]:
        """`bench.servers.running_server` with its log in the output directory."""
        log_path = self.output_dir / f"{app.replace(':', '_')}-{secrets.token_hex(2)}.log"
        with running_server(app, log_path=log_path, **kwargs) as server:
            yield server

    def delete_redis_keys(self) -> int:
        """Deletes every key under this run's prefix."""
        client = redis.Redis.from_url(self.redis_url)
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=self.key_prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += client.unlink(*batch)
                    batch = []
            if batch:
                deleted += client.unlink(*batch)
        finally:
            client.close()
        return deleted

    def close(self) -> None:
        self._cleanup.close()
        with contextlib.suppress(redis.RedisError):
            self.delete_redis_keys()


def resolve(names: Iterable[str]) -> list[Scenario]:
    """Scenarios by name; `all` means every registered one, `ceilings` first."""
    registry = load_scenarios()
    chosen: list[Scenario] = []
    for name in names:
        if name == "all":
            ordered = sorted(registry.values(), key=lambda s: s.name != "ceilings")
            chosen += [s for s in ordered if s not in chosen]
        elif name in registry:
            if registry[name] not in chosen:
                chosen.append(registry[name])
        else:
            known = ", ".join(["all", *sorted(registry)])
            broken = f"; modules that failed to import: {', '.join(IMPORT_ERRORS)}"
            raise KeyError(
                f"unknown scenario {name!r}; known: {known}{broken if IMPORT_ERRORS else ''}"
            )
    return chosen


def _as_results(output: ScenarioOutput) -> list[Result]:
    if output is None:
        return []
    if isinstance(output, Result):
        return [output]
    return list(output)


def run(
    names: Iterable[str],
    *,
    quick: bool = False,
    json: bool = False,
    output: Path | None = None,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    redis_url: str = DEFAULT_REDIS_URL,
    output_dir: Path | None = None,
    stdout: TextIO | None = None,
    log_stream: TextIO | None = None,
) -> tuple[list[Result], list[str]]:
    """Runs scenarios, printing each result as it comes (JSON lines with `json`) and
    appending it to `output`; server logs go to `output_dir` (var/bench by default).
    Returns the results and the names of scenarios that failed.
    """
    chosen = resolve(names)
    out = stdout or sys.stdout
    output_dir = output_dir or Path("var/bench")
    output_dir.mkdir(parents=True, exist_ok=True)

    def emit(result: Result) -> None:
        print(result.to_json() if json else format_result(result), file=out, flush=True)
        if output is not None:
            append_results([result], output)

    ctx = BenchContext(
        quick=quick,
        postgres_url=postgres_url,
        redis_url=redis_url,
        output_dir=output_dir,
        emit=emit,
        log_stream=log_stream or sys.stderr,
        machine=machine_info(_server_versions(postgres_url, redis_url)),
    )
    failed: list[str] = []
    for module, error in IMPORT_ERRORS.items():
        failed.append(f"import {module}")
        ctx.log(f"{module} failed to import:\n{error}")
    try:
        for chosen_scenario in chosen:
            ctx.log(f"scenario {chosen_scenario.name}{' (quick)' if quick else ''}")
            try:
                for result in _as_results(chosen_scenario.function(ctx)):
                    ctx.record(result)
            except Exception:
                failed.append(chosen_scenario.name)
                ctx.log(f"scenario {chosen_scenario.name} failed:\n{traceback.format_exc()}")
    finally:
        ctx.close()
    return ctx.results, failed


@scenario("ceilings", "Measures and prints the ceilings of the building blocks")
def ceilings(ctx: BenchContext) -> list[Result]:
    importlib.import_module("bench.ceilings")
    return [ctx.ceiling(name) for name in CEILINGS]
