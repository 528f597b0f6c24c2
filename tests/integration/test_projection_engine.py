"""Projection engine on real PostgreSQL and Redis.

Also runnable: ``python -m tests.integration.test_projection_engine worker ...`` is the
worker process the crash test kills, and ``... rebuild-rate`` measures rebuild speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import redis
from eventsourcing.postgres import PostgresApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL, Identifier

from projections.engine import (
    DecodedBatch,
    DomainEvent,
    Outcome,
    Projection,
    ProjectionState,
    Read,
    RebuildProgress,
    ViewBatch,
    apply_batch,
    load_state,
    measure_lag,
    partition_for,
    positions,
    rebuild,
    wait_for,
)
from projections.pipelined import PipelinedRedis
from projections.stores import (
    ALREADY_APPLIED,
    AsyncRedisReader,
    PartitionCommit,
    PartitionState,
    ReadModelsUnavailable,
    RedisStore,
)
from projections.worker import ProjectionWorker
from reliability.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.toy import Counter, Counters, record
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class CounterView(Projection):
    name = "counter"
    contexts = ("toy",)
    delay = 0.0
    """Seconds to sleep per event, to make the crash test's worker slow."""

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        if self.delay:
            time.sleep(self.delay)
        key = str(event.originator_id)
        if isinstance(event, Counter.Created):
            view.set(f"total:{key}", 0)
            view.sadd("labels", event.label)
            view.zadd("open", key, float(event.originator_version))
            view.hincrby("stats", "created")
        elif isinstance(event, Counter.Bumped):
            total = int(view.get(f"total:{key}") or b"0") + event.amount
            view.set(f"total:{key}", total)
            view.hincrby("stats", "bumps")
            view.hincrby("stats", "sum", event.amount)
            info = view.hgetall(f"info:{key}")
            view.hset(f"info:{key}", "bumps", int(info.get(b"bumps", b"0")) + 1)
            if total > 5:
                view.zrem("open", key)
                view.sadd("big", key)
            elif view.sismember("big", key):
                view.srem("big", key)
                view.zadd("open", key, float(event.originator_version))


class PartitionedCounterView(CounterView):
    name = "counter-parts"
    partitions = 4

    def prefetch(self, event: DomainEvent, context: str) -> Iterator[Read]:
        if isinstance(event, Counter.Bumped):
            yield ("get", f"total:{event.originator_id}")
            yield ("hgetall", f"info:{event.originator_id}")
            yield ("sismember", "big", str(event.originator_id))

    def partition_of(self, event: DomainEvent) -> int:
        return partition_for(str(event.originator_id), self.partitions)


def postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "CREATE_TABLE": "y",
    }


def record_many(app: Counters, counters: int, bumps: int) -> int:
    """Create counters and bump them round-robin, 100 aggregates per save."""
    items = [Counter(label=f"c{i % 3}") for i in range(counters)]
    for i in range(bumps):
        items[i % counters].bump(1 + i % 3)
    last = 0
    for start in range(0, counters, 100):
        last = app.save(*items[start : start + 100])[-1].notification.id
    return last


@pytest.fixture
def app(postgres_url: str) -> Iterator[Counters]:
    application = Counters(env=postgres_env(postgres_url))
    yield application
    application.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def store(client: redis.Redis, redis_prefix: str) -> RedisStore:
    return RedisStore(client, redis_prefix.rstrip(":"))


def namespace_keys(client: redis.Redis, namespace: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=f"{namespace}:*", count=1000))


steps = st.lists(st.tuples(st.integers(0, 3), st.integers(-3, 4)), min_size=1, max_size=25)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(chunks=st.lists(steps, min_size=1, max_size=3), batch_size=st.integers(1, 10))
def test_incremental_build_equals_rebuild(
    app: Counters,
    client: redis.Redis,
    redis_prefix: str,
    chunks: list[list[tuple[int, int]]],
    batch_size: int,
) -> None:
    namespace = f"{redis_prefix}{os.urandom(4).hex()}"
    store = RedisStore(client, namespace)
    projections = [CounterView(), PartitionedCounterView()]
    worker = ProjectionWorker({"toy": app}, projections, store, batch_size=batch_size)
    counters: list[Counter] = []
    for chunk in chunks:
        record(app, chunk, counters)
        worker.catch_up()
    for projection in projections:
        incremental = store.snapshot(projection.name)
        assert incremental
        rebuild(store, projection, {"toy": app}, page_size=10_000)
        assert store.snapshot(projection.name) == incremental
        rebuild(store, projection, {"toy": app}, page_size=3)
        assert store.snapshot(projection.name) == incremental


def test_redelivery_changes_nothing(app: Counters, store: RedisStore) -> None:
    counters: list[Counter] = []
    record(app, [(0, 0), (0, 3), (0, 4), (1, 0), (1, 2), (0, 1)], counters)
    projection = CounterView()
    ProjectionWorker({"toy": app}, [projection], store, batch_size=2).catch_up()
    before = store.snapshot("counter")
    assert before["p0:stats"] == {b"created": b"2", b"bumps": b"4", b"sum": b"10"}

    notifications = app.recorder.select_notifications(start=0, limit=100, inclusive_of_start=False)
    batch = DecodedBatch(app.mapper, notifications)
    current = load_state(store, projection)
    assert current is not None
    assert apply_batch(store, projection, current, "toy", 0, batch) is Outcome.NOTHING_NEW
    stale = ProjectionState(current.info, [PartitionState(current.parts[0].version - 1)])
    assert apply_batch(store, projection, stale, "toy", 0, batch) is Outcome.STALE
    replay = PartitionCommit(0, current.parts[0].version, {"toy": 3}, [("I", "x", b"f", b"1")])
    assert store.commit("counter", current.info.gen, [replay]) == [ALREADY_APPLIED]
    assert ProjectionWorker({"toy": app}, [projection], store).catch_up() == 0
    assert store.snapshot("counter") == before


def start_worker_process(
    postgres_url: str, redis_url: str, namespace: str, delay: float
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tests.integration.test_projection_engine",
        "worker",
        "--pg-env",
        json.dumps(postgres_env(postgres_url)),
        "--redis-url",
        redis_url,
        "--namespace",
        namespace,
        "--delay",
        str(delay),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env)


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    app: Counters, store: RedisStore, postgres_url: str, redis_url: str
) -> None:
    projection = CounterView()
    slow = start_worker_process(postgres_url, redis_url, store.layout.namespace, delay=0.004)
    try:
        wait_until(lambda: positions(store, projection) is not None, 20)
        head = record_many(app, counters=20, bumps=380)
        wait_until(lambda: (positions(store, projection) or {}).get("toy", 0) >= 60, 20)
        time.sleep(0.05)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    reached = (positions(store, projection) or {})["toy"]
    assert 60 <= reached < head

    fast = start_worker_process(postgres_url, redis_url, store.layout.namespace, delay=0.0)
    try:
        wait_for(store, [projection], {"toy": head}, timeout=20)
        counters: list[Counter] = []
        last = record(app, [(0, 5), (0, 1), (1, 2)], counters)
        wait_for(store, [projection], f"toy:{last}", timeout=10)
        lag = measure_lag(store, {"toy": app}, [projection])["counter"]["toy"]
        assert (lag.events, lag.seconds, lag.position) == (0, 0.0, last)
    finally:
        fast.send_signal(signal.SIGTERM)
        assert fast.wait(timeout=15) == 0

    live = store.snapshot("counter")
    assert live["p0:stats"] == {
        b"created": b"22",
        b"bumps": b"381",
        b"sum": str(sum(1 + i % 3 for i in range(380)) + 1).encode(),
    }
    rebuild(store, projection, {"toy": app})
    assert store.snapshot("counter") == live


def test_flushall_and_restart_without_persistence_are_recovered(
    app: Counters, throwaway_redis: ThrowawayRedis
) -> None:
    client = redis.Redis.from_url(throwaway_redis.url, socket_timeout=2)
    store = RedisStore(client, "loss")
    projections = [CounterView(), PartitionedCounterView()]
    worker = ProjectionWorker(
        {"toy": app},
        projections,
        store,
        check_interval=0.1,
        initial_backoff=0.05,
        max_backoff=0.2,
    )
    counters: list[Counter] = []
    last = record(app, [(0, 1), (0, 2), (1, 1), (0, 3), (1, 4)], counters)
    worker.start()
    try:
        worker.wait({"toy": last}, timeout=10)
        before = {p.name: store.snapshot(p.name) for p in projections}
        client.flushall()
        wait_until(lambda: all(store.snapshot(p.name) == before[p.name] for p in projections))

        throwaway_redis.restart()
        wait_until(lambda: all(store.snapshot(p.name) == before[p.name] for p in projections))
        last = record(app, [(1, 1)], counters)
        worker.wait({"toy": last}, timeout=10)
        assert store.reader().get("counter", f"total:{counters[1].id}") == b"5"
    finally:
        worker.stop()
        client.close()


def test_lost_database_connection_restarts_the_loop(
    throwaway_postgres: ThrowawayPostgres, store: RedisStore
) -> None:
    app = Counters(env=postgres_env(throwaway_postgres.create_database()))
    projection = CounterView()
    worker = ProjectionWorker(
        {"toy": app}, [projection], store, initial_backoff=0.05, max_backoff=0.5
    )
    counters: list[Counter] = []
    last = record(app, [(0, 1), (0, 1)], counters)
    worker.start()
    try:
        worker.wait({"toy": last}, timeout=10)
        throwaway_postgres.kill()
        time.sleep(0.3)
        throwaway_postgres.start()
        last = record(app, [(0, 2)], counters)
        worker.wait({"toy": last}, timeout=15)
        assert store.reader().get("counter", f"total:{counters[0].id}") == b"3"
    finally:
        worker.stop()
        app.close()


def saved_without_notify(app: Counters, counter: Counter) -> int:
    """`counter`'s pending events inserted as the library's recorder would, but with no
    NOTIFY: what a subscription sees of a commit made before its LISTEN started."""
    recorder = app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    insert = SQL(
        "INSERT INTO {table} (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s) RETURNING notification_id"
    ).format(table=Identifier(recorder.events_table_name))
    last = 0
    with recorder.datastore.transaction(commit=True) as cursor:
        for event in counter.collect_events():
            stored = app.mapper.to_stored_event(event)
            params = (stored.originator_id, stored.originator_version, stored.topic, stored.state)
            cursor.execute(insert, params)
            row = cursor.fetchone()
            assert row is not None
            last = row["notification_id"]
    return last


def test_a_subscription_that_missed_a_notification_is_reopened(
    app: Counters, store: RedisStore
) -> None:
    worker = ProjectionWorker({"toy": app}, [CounterView()], store, check_interval=0.2)
    counters: list[Counter] = []
    worker.start()
    try:
        worker.wait({"toy": record(app, [(0, 1)], counters)}, timeout=10)
        time.sleep(0.5)  # the subscription has read everything and waits for a NOTIFY
        unannounced = Counter(label="c1")
        unannounced.bump(4)
        last = saved_without_notify(app, unannounced)
        worker.wait({"toy": last}, timeout=5)
        assert store.reader().get("counter", f"total:{unannounced.id}") == b"4"
    finally:
        worker.stop()


def test_rebuild_while_worker_runs_switches_atomically_and_drops_old_keys(
    app: Counters, store: RedisStore, client: redis.Redis
) -> None:
    projection = CounterView()
    worker = ProjectionWorker({"toy": app}, [projection], store)
    counters: list[Counter] = []
    last = record_many(app, counters=10, bumps=300)
    worker.start()
    reader = store.reader()
    try:
        worker.wait({"toy": last}, timeout=10)
        first = store.meta("counter")
        assert first is not None
        assert reader.hget("counter", "stats", "created") == b"10"
        stop = threading.Event()

        def write() -> None:
            while not stop.wait(0.001):
                record(app, [(0, 1)], counters)

        writer = threading.Thread(target=write)
        writer.start()
        seen: list[RebuildProgress] = []
        try:
            for _ in range(2):
                rebuild(store, projection, {"toy": app}, progress=seen.append, page_size=100)
        finally:
            stop.set()
            writer.join()
        worker.wait({"toy": app.recorder.max_notification_id() or 0}, timeout=10)
    finally:
        worker.stop()
    info = store.meta("counter")
    assert info is not None
    assert info.gen == first.gen + 2
    current = (f"}}:g{info.gen}:", f"}}:g{info.gen}~")
    for key in namespace_keys(client, store.layout.namespace):
        assert key.endswith("}:meta") or any(c in key for c in current), key
    assert seen[-1].done >= 310
    total = counters[0].version - 1
    assert reader.get("counter", f"total:{counters[0].id}") == str(total).encode()
    live = store.snapshot("counter")
    rebuild(store, projection, {"toy": app})
    assert store.snapshot("counter") == live


def test_async_reader_follows_generation_switch(
    app: Counters, store: RedisStore, redis_url: str
) -> None:
    projection = CounterView()
    counters: list[Counter] = []
    record(app, [(0, 1), (0, 2)], counters)
    ProjectionWorker({"toy": app}, [projection], store).catch_up()
    key = f"total:{counters[0].id}"

    async def read() -> tuple[bytes | None, str | None]:
        client = PipelinedRedis.from_url(redis_url)
        try:
            reader = AsyncRedisReader(client, store.layout.namespace)
            value = await reader.get("counter", key)
            return value, await reader.physical_key("counter", key)
        finally:
            await client.aclose()

    sync_reader = store.reader()
    assert sync_reader.get("counter", key) == b"2"
    assert asyncio.run(read())[0] == b"2"
    rebuild(store, projection, {"toy": app})
    assert sync_reader.get("counter", key) == b"2"
    value, physical = asyncio.run(read())
    assert value == b"2"
    info = store.meta("counter")
    assert info is not None
    assert physical == store.layout.key("counter", info.gen, 0, key)
    assert sync_reader.hgetall("counter", "stats") == {
        b"created": b"1",
        b"bumps": b"1",
        b"sum": b"2",
    }
    assert sync_reader.smembers("counter", "labels") == {b"c1"}
    assert sync_reader.zrangebyscore("counter", "open", 0, 10) == [
        (str(counters[0].id).encode(), 1.0)
    ]


def test_readers_take_a_generation_of_another_version_for_one_being_rebuilt(
    app: Counters, store: RedisStore, redis_url: str
) -> None:
    projection = CounterView()
    counters: list[Counter] = []
    record(app, [(0, 1)], counters)
    ProjectionWorker({"toy": app}, [projection], store).catch_up()
    key = f"total:{counters[0].id}"
    newer = {"counter": projection.version + 1}

    async def read(versions: dict[str, int]) -> bytes | None:
        client = PipelinedRedis.from_url(redis_url)
        try:
            reader = AsyncRedisReader(client, store.layout.namespace, ttl=0.0, versions=versions)
            return await reader.get("counter", key)
        finally:
            await client.aclose()

    assert store.reader({"counter": projection.version}).get("counter", key) == b"0"
    assert asyncio.run(read({"counter": projection.version})) == b"0"
    with pytest.raises(ReadModelsUnavailable):
        store.reader(newer).get("counter", key)
    with pytest.raises(ReadModelsUnavailable):
        asyncio.run(read(newer))
    assert store.reader(newer).physical_key("counter", key) is None


# ------------------------------------------------------------------- command line


def _worker_main(args: argparse.Namespace) -> None:
    CounterView.delay = args.delay
    application = Counters(env=json.loads(args.pg_env))
    store = RedisStore(redis.Redis.from_url(args.redis_url), args.namespace)
    worker = ProjectionWorker({"toy": application}, [CounterView()], store, batch_size=20)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.run_forever()


def _rebuild_rate_main(args: argparse.Namespace) -> None:
    """Record ``--events`` events once (if the table has fewer), then time a rebuild."""
    application = Counters(env=json.loads(args.pg_env))
    have = application.recorder.max_notification_id() or 0
    if have < args.events:
        per_counter = 10
        for _ in range(0, args.events - have, 100 * per_counter):
            record_many(application, counters=100, bumps=100 * (per_counter - 1))
    store = RedisStore(redis.Redis.from_url(args.redis_url), args.namespace)
    total = application.recorder.max_notification_id() or 0
    started = time.perf_counter()
    after = 0
    while notifications := application.recorder.select_notifications(
        start=after, limit=args.page_size, inclusive_of_start=False
    ):
        for notification in notifications:
            application.mapper.to_domain_event(notification)
        after = notifications[-1].id
    ceiling = total / (time.perf_counter() - started)
    print(f"read and decode only: {ceiling:,.0f} events/s")
    projection = PartitionedCounterView() if args.partitioned else BumpStats()
    started = time.perf_counter()
    rebuild(store, projection, {"toy": application}, page_size=args.page_size)
    rate = total / (time.perf_counter() - started)
    print(f"rebuild {projection.name}: {total} events, {rate:,.0f} events/s ({rate / ceiling:.0%})")
    info = store.meta(projection.name)
    if info is not None:
        store.drop_generation(projection.name, info.gen, info.partitions)
    store.client.delete(store.layout.meta(projection.name))


class BumpStats(Projection):
    """Write-only projection of the kind statistics counters are: no reads."""

    name = "bump-stats"
    contexts = ("toy",)

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        if isinstance(event, Counter.Bumped):
            view.hincrby("stats", "bumps")
            view.hincrby("stats", "sum", event.amount)
            view.hincrby(f"by-day:{event.timestamp:%Y-%m-%d}", str(event.originator_id)[:2])
        else:
            view.sadd("counters", str(event.originator_id))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.test_projection_engine")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--pg-env", required=True)
    worker.add_argument("--redis-url", required=True)
    worker.add_argument("--namespace", required=True)
    worker.add_argument("--delay", type=float, default=0.0)
    rate = sub.add_parser("rebuild-rate")
    rate.add_argument("--pg-env", required=True)
    rate.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    rate.add_argument("--namespace", default="vaxreg-bench")
    rate.add_argument("--events", type=int, default=200_000)
    rate.add_argument("--page-size", type=int, default=2000)
    rate.add_argument("--partitioned", action="store_true")
    args = parser.parse_args()
    if args.command == "worker":
        _worker_main(args)
    else:
        _rebuild_rate_main(args)


if __name__ == "__main__":
    main()
