"""The ceilings of the building blocks, measured in the same run as the scenarios.

Each mirrors how the building block's own tool measures it (pgbench-style inserts, COPY,
a bare ASGI endpoint under wrk). Each function returns a `Result` named
`ceiling.<name>`; `BenchContext.ceiling(name)` memoises it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.harness import BenchContext, ceiling
from bench.loadgen import (
    LoadResult,
    Request,
    fixed_request,
    run_closed_loop,
    run_http_load,
    run_wrk,
    wrk_available,
)
from bench.results import LatencyRecorder, Result

CHECKPOINT_DOCUMENT = json.dumps(
    {
        "person": "7b0c5a8e-2f3d-4c61-9a57-0d6e1f2a3b4c",
        "name": "Nguyễn Thị Minh Khai",
        "birth_year": 1987,
        "status": "fully_vaccinated",
        "doses": [
            {"n": 1, "vaccine": "comirnaty", "date": "2021-08-02", "province": "79"},
            {"n": 2, "vaccine": "comirnaty", "date": "2021-09-01", "province": "79"},
            {"n": 3, "vaccine": "spikevax", "date": "2022-03-14", "province": "01"},
        ],
        "certificate": "urn:uvci:01:VN:7B0C5A8E2F3D4C619A57",
        "as_of": 184467,
    },
    ensure_ascii=False,
    separators=(",", ":"),
).encode()
"""Stands in for a checkpoint read-model value (about 350 bytes)."""

DOSE_BODY = json.dumps(
    {
        "person_id": "079187001234",
        "vaccine": "comirnaty",
        "lot": "FK8891",
        "dose_number": 2,
        "date": "2021-09-01",
        "site": "79-760-26734",
        "performer": "nurse-0042",
    },
    separators=(",", ":"),
)

CEILING_APP = "bench.asgi_ceiling:app"
EVENT_STATE = json.dumps(
    {
        "dose_number": 2,
        "vaccine": "comirnaty",
        "lot": "FK8891",
        "date": "2021-09-01",
        "site": "79-760-26734",
        "performer": "nurse-0042",
        "recorded_by": "u-17",
        "padding": "x" * 60,
    },
    separators=(",", ":"),
).encode()
"""Stands in for a stored event's state (about 200 bytes)."""


class TinyAggregate(Aggregate):
    """Two events per aggregate: its creation and one note."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    @event("Noted")
    def note(self, value: int) -> None:
        self.value = value


def _tiny(i: int) -> TinyAggregate:
    aggregate = TinyAggregate(name=f"n{i}")
    aggregate.note(i)
    return aggregate


def _http_load(url: str, ctx: BenchContext, *, duration_s: float, **kwargs: Any) -> LoadResult:
    return run_http_load(
        url, duration_s=duration_s, warn=lambda m: ctx.log(f"warning: {m}"), **kwargs
    )


def _throughput(load: LoadResult) -> float:
    return load.throughput


LOOKUP_PATHS = 20_000
BEARER_LIKE = "Bearer " + "t" * 320
"""An Authorization header of the size of a checkpoint officer's token."""


def lookup_requests() -> dict[str, Any]:
    """The request shape of the checkpoint scenario for the ceiling: random
    ``/v1/checkpoint/{12 digits}`` paths and a bearer token's worth of header, so the
    load generator does the same work against the ceiling as against the API."""
    rng = random.Random(7)
    paths = [f"/v1/checkpoint/{rng.randrange(10**12):012d}" for _ in range(LOOKUP_PATHS)]
    return {"paths": paths, "headers": {"Authorization": BEARER_LIKE}}


def _asgi_get(ctx: BenchContext, name: str, client: str) -> Result:
    key = ctx.redis_key(f"ceiling:{name}")
    ctx.redis().set(key, CHECKPOINT_DOCUMENT)
    env = {
        "VAXREG_BENCH_CEILING_REDIS_URL": ctx.redis_url,
        "VAXREG_BENCH_CEILING_KEY": key,
        "VAXREG_BENCH_CEILING_CLIENT": client,
    }
    requests = lookup_requests()
    with ctx.server(CEILING_APP, workers=2, env=env, ready_path="/ping") as server:
        _http_load(server.url, ctx, duration_s=1, **requests)
        load, runs = ctx.median_of(
            lambda: _http_load(server.url, ctx, duration_s=ctx.seconds(5, 2), **requests),
            _throughput,
        )
    if load.errors:
        raise RuntimeError(f"the ceiling app answered {load.errors} errors: {load.summary()}")
    return Result(
        f"ceiling.{name}",
        load.throughput,
        "req/s",
        p50_ms=load.p50_ms,
        p95_ms=load.p95_ms,
        p99_ms=load.p99_ms,
        details={
            "client": client,
            "value_bytes": len(CHECKPOINT_DOCUMENT),
            "workers": 2,
            "runs": [round(r, 1) for r in runs],
            "load": load.summary(),
        },
    )


@ceiling("asgi_redis_get")
def asgi_redis_get(ctx: BenchContext) -> Result:
    """Raw ASGI doing one redis.asyncio GET per request, 2 uvicorn workers, wrk -c64."""
    return _asgi_get(ctx, "asgi_redis_get", "redis.asyncio")


@ceiling("asgi_pipelined_get")
def asgi_pipelined_get(ctx: BenchContext) -> Result:
    """The same with the API's pipelined Redis reads instead of redis.asyncio."""
    return _asgi_get(ctx, "asgi_pipelined_get", "pipelined")


@ceiling("python_loadgen")
def python_loadgen(ctx: BenchContext) -> Result:
    """The Python generator's own ceiling: POSTs of a dose-sized body to the bare ASGI
    endpoint (2 workers, 64 connections), against wrk doing the same in alternating runs.
    """
    env = {"VAXREG_BENCH_CEILING_REDIS_URL": ctx.redis_url, "VAXREG_BENCH_CEILING_KEY": "-"}
    duration = ctx.seconds(3, 2)
    make = fixed_request(
        Request("POST", "/ping", DOSE_BODY.encode(), {"Content-Type": "application/json"})
    )
    python_runs: list[LoadResult] = []
    wrk_runs: list[LoadResult] = []
    with ctx.server(CEILING_APP, workers=2, env=env, ready_path="/ping") as server:
        url = server.url + "/ping"
        run_closed_loop(url, make, concurrency=64, duration_s=1)
        for _ in range(ctx.repeats):
            python_runs.append(run_closed_loop(url, make, concurrency=64, duration_s=duration))
            if wrk_available():
                wrk_runs.append(
                    run_wrk(
                        url,
                        duration_s=duration,
                        method="POST",
                        body=DOSE_BODY,
                        headers={"Content-Type": "application/json"},
                    )
                )
    python = sorted(python_runs, key=_throughput)[len(python_runs) // 2]
    wrk = sorted(wrk_runs, key=_throughput)[len(wrk_runs) // 2] if wrk_runs else None
    return Result(
        "ceiling.python_loadgen",
        python.throughput,
        "req/s",
        ceiling=wrk.throughput if wrk else None,
        ceiling_unit="req/s (wrk, same endpoint)" if wrk else None,
        p50_ms=python.p50_ms,
        p95_ms=python.p95_ms,
        p99_ms=python.p99_ms,
        details={
            "python_runs": [round(r.throughput, 1) for r in python_runs],
            "wrk_runs": [round(r.throughput, 1) for r in wrk_runs],
            "client_cpu_fraction": python.details["client_cpu_fraction"],
            "python": python.summary(),
            "wrk": wrk.summary() if wrk else None,
            "body_bytes": len(DOSE_BODY),
        },
    )


def _application(ctx: BenchContext, dbname: str) -> Application[uuid.UUID]:
    return Application[uuid.UUID](env={**ctx.postgres_env(dbname), "POSTGRES_POOL_SIZE": "2"})


def _save_one_by_one(
    app: Application[uuid.UUID], duration_s: float
) -> tuple[float, LatencyRecorder]:
    latency = LatencyRecorder()
    saved = 0
    start = time.perf_counter()
    deadline = start + duration_s
    while (now := time.perf_counter()) < deadline:
        aggregate = _tiny(saved)
        t0 = time.perf_counter()
        app.save(aggregate)
        latency.record((time.perf_counter() - t0) * 1000)
        saved += 1
    return saved / (now - start), latency


@ceiling("library_save_rate")
def library_save_rate(ctx: BenchContext) -> Result:
    """eventsourcing on PostgreSQL, one `save()` of a 2-event aggregate per command."""
    duration = ctx.seconds(4, 2)
    with ctx.temp_database() as dbname:
        app = _application(ctx, dbname)
        try:
            for i in range(50):
                app.save(_tiny(i))
            (rate, latency), runs = ctx.median_of(
                lambda: _save_one_by_one(app, duration), lambda run: run[0]
            )
            batched = 0
            start = time.perf_counter()
            deadline = start + duration / 2
            while (now := time.perf_counter()) < deadline:
                app.save(*(_tiny(batched + j) for j in range(100)))
                batched += 100
            batched_rate = batched / (now - start)
        finally:
            app.close()
    return Result(
        "ceiling.library_save_rate",
        rate,
        "aggregates/s",
        details={
            "events_per_aggregate": 2,
            "seconds_per_run": duration,
            "runs": [round(r, 1) for r in runs],
            "batched_100_aggregates_per_s": round(batched_rate, 1),
        },
    ).with_latency(latency)


COPY_TABLE_DDL = """
DROP TABLE IF EXISTS copy_events;
CREATE TABLE copy_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX copy_events_notification_id_idx ON copy_events (notification_id ASC);
"""


def _copy_rows(n: int) -> Iterator[tuple[uuid.UUID, int, str, bytes]]:
    topics = ("vaxreg.bench:Created", "vaxreg.bench:Noted")
    originator = uuid.uuid4()
    for i in range(n):
        if i % 2 == 0:
            originator = uuid.uuid4()
        yield originator, i % 2 + 1, topics[i % 2], EVENT_STATE


def _copy_once(conn: psycopg.Connection[Any], rows: int) -> float:
    """Rows/s of one binary COPY (commit included) into a freshly created table."""
    conn.execute(COPY_TABLE_DDL)
    conn.commit()
    start = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY copy_events (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["uuid", "int8", "text", "bytea"])
        for row in _copy_rows(rows):
            copy.write_row(row)
    conn.commit()
    return rows / (time.perf_counter() - start)


@ceiling("copy_rate")
def copy_rate(ctx: BenchContext) -> Result:
    """Binary COPY (psycopg `cursor.copy()`) of event-store-shaped rows into a table
    indexed like the library's stored events table.
    """
    rows = ctx.size(500_000, 50_000)
    with ctx.temp_database() as dbname, psycopg.connect(ctx.postgres_dsn(dbname)) as conn:
        rate, runs = ctx.median_of(lambda: _copy_once(conn, rows), float)
    return Result(
        "ceiling.copy_rate",
        rate,
        "rows/s",
        details={
            "rows_per_run": rows,
            "state_bytes": len(EVENT_STATE),
            "runs": [round(r, 1) for r in runs],
        },
    )


def _read_rate(app: Application[uuid.UUID], *, decode: bool) -> float:
    start = time.perf_counter()
    count = _read_all(app, decode=decode)
    return count / (time.perf_counter() - start)


@ceiling("decode_rate")
def decode_rate(ctx: BenchContext) -> Result:
    """`select_notifications(limit=1000)` pages decoded to domain events by the app's mapper."""
    events = ctx.size(100_000, 10_000)
    with ctx.temp_database() as dbname:
        app = _application(ctx, dbname)
        try:
            for first in range(0, events // 2, 100):
                app.save(*(_tiny(i) for i in range(first, min(first + 100, events // 2))))
            raw, raw_runs = ctx.median_of(lambda: _read_rate(app, decode=False), float)
            rate, runs = ctx.median_of(lambda: _read_rate(app, decode=True), float)
        finally:
            app.close()
    return Result(
        "ceiling.decode_rate",
        rate,
        "events/s",
        details={
            "events": events,
            "runs": [round(r, 1) for r in runs],
            "raw_notifications_per_s": round(raw, 1),
            "raw_runs": [round(r, 1) for r in raw_runs],
        },
    )


def _read_all(app: Application[uuid.UUID], *, decode: bool) -> int:
    count = 0
    start = 1
    while True:
        page = app.recorder.select_notifications(start, limit=1000)
        if not page:
            return count
        if decode:
            for notification in page:
                app.mapper.to_domain_event(notification)
        count += len(page)
        start = page[-1].id + 1
