"""Projection engine on MemoryStore with popo and SQLite applications."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import engine
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
    parse_position,
    partition_for,
    rebuild,
)
from projections.stores import (
    MemoryStore,
    PartitionCommit,
    PartitionState,
    ReadModelsUnavailable,
)
from projections.worker import ProjectionWorker
from tests.support.toy import Counter, Counters, record
from tests.support.waiting import wait_until


class CounterView(Projection):
    """Exercises every ViewBatch operation, reads included."""

    name = "tally"
    contexts = ("toy",)

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        key = str(event.originator_id)
        if isinstance(event, Counter.Created):
            view.set(f"total:{key}", 0)
            view.sadd("labels", event.label)
            view.hset(f"info:{key}", "label", event.label)
            view.zadd("open", key, float(event.originator_version))
            view.hincrby("stats", "created")
        elif isinstance(event, Counter.Bumped):
            total = int(view.get(f"total:{key}") or b"0") + event.amount
            view.set(f"total:{key}", total)
            view.hincrby("stats", "bumps")
            view.hincrby("stats", "sum", event.amount)
            info = view.hgetall(f"info:{key}")
            view.hset(f"info:{key}", "bumps", int(info.get(b"bumps", b"0")) + 1)
            if event.amount == 0:
                view.hdel(f"info:{key}", "last")
            else:
                view.hset(f"info:{key}", "last", event.amount)
            if total > 5:
                view.zrem("open", key)
                view.sadd("big", key)
            elif view.sismember("big", key):
                view.srem("big", key)
                view.zadd("open", key, float(event.originator_version))
            if total < -5:
                view.delete(f"total:{key}")
                view.set(f"total:{key}", 0)


class PartitionedCounterView(CounterView):
    name = "tally-parts"
    partitions = 3

    def prefetch(self, event: DomainEvent, context: str) -> Iterator[Read]:
        if isinstance(event, Counter.Bumped):
            yield ("get", f"total:{event.originator_id}")
            yield ("hgetall", f"info:{event.originator_id}")
            yield ("sismember", "big", str(event.originator_id))

    def partition_of(self, event: DomainEvent) -> int:
        return partition_for(str(event.originator_id), self.partitions)


class BumpCounter(Projection):
    """Only counts bumps; filtered by topic."""

    name = "bumps"
    contexts = ("toy",)
    topics = (Counter.Bumped.TOPIC,)

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        view.hincrby("count", "bumps")


class BatchTotals(Projection):
    """Sums bumps per tally in ``view.scratch`` and writes each total once, in `finish`."""

    name = "batch-totals"
    contexts = ("toy",)
    topics = (Counter.Bumped.TOPIC,)
    partitions = 2

    def __init__(self) -> None:
        self.finished: list[tuple[int, dict[str, int]]] = []

    def partition_of(self, event: DomainEvent) -> int:
        return partition_for(str(event.originator_id), self.partitions)

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        amounts: dict[str, int] = view.scratch.setdefault("amounts", {})
        key = str(event.originator_id)
        amounts[key] = amounts.get(key, 0) + getattr(event, "amount")  # noqa: B009

    def finish(self, view: ViewBatch) -> None:
        amounts: dict[str, int] = view.scratch["amounts"]
        self.finished.append((view.partition, dict(amounts)))
        for key, amount in amounts.items():
            view.set(f"total:{key}", int(view.get(f"total:{key}") or b"0") + amount)

    def held(self, view: ViewBatch) -> int:
        return len(view.scratch.get("amounts", ()))


def popo_app() -> Counters:
    return Counters(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


histories = st.lists(st.tuples(st.integers(0, 3), st.integers(-3, 4)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(histories, min_size=1, max_size=4),
    batch_size=st.integers(1, 12),
)
def test_incremental_build_equals_rebuild(
    chunks: list[list[tuple[int, int]]], batch_size: int
) -> None:
    app = popo_app()
    store = MemoryStore("t")
    projections = [CounterView(), PartitionedCounterView(), BumpCounter()]
    worker = ProjectionWorker({"toy": app}, projections, store, batch_size=batch_size)
    counters: list[Counter] = []
    for chunk in chunks:
        record(app, chunk, counters)
        worker.catch_up()
    incremental = {p.name: store.snapshot(p.name) for p in projections}
    bumps = (app.recorder.max_notification_id() or 0) - len(counters)
    assert store.reader().hget("bumps", "count", "bumps") == (
        str(bumps).encode() if bumps else None
    )
    for projection in projections:
        # One page: every read is answered by the batch itself, none by the store.
        rebuild(store, projection, {"toy": app}, page_size=10_000)
        assert store.snapshot(projection.name) == incremental[projection.name]
        rebuild(store, projection, {"toy": app}, page_size=7)
        assert store.snapshot(projection.name) == incremental[projection.name]
    assert incremental["tally"]
    assert incremental["tally-parts"]


def test_redelivered_batch_changes_nothing() -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(0, 0), (0, 3), (0, 4), (1, 0), (1, 2)], counters)
    projection = CounterView()
    worker = ProjectionWorker({"toy": app}, [projection], store)
    worker.catch_up()
    before = store.snapshot("tally")
    assert before["p0:stats"] == {b"created": b"2", b"bumps": b"3", b"sum": b"9"}

    notifications = app.recorder.select_notifications(start=0, limit=100, inclusive_of_start=False)
    batch = DecodedBatch(app.mapper, notifications)
    current = load_state(store, projection)
    assert current is not None
    assert apply_batch(store, projection, current, "toy", 0, batch) is Outcome.NOTHING_NEW
    stale = ProjectionState(current.info, [PartitionState(1)])
    assert apply_batch(store, projection, stale, "toy", 0, batch) is Outcome.STALE
    assert ProjectionWorker({"toy": app}, [projection], store).catch_up() == 0
    assert store.snapshot("tally") == before


def test_finish_runs_once_per_partition_batch_and_commits_with_it() -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(0, 0), (1, 0), (0, 2), (0, 3), (1, 4), (1, 1)], counters)
    projection = BatchTotals()
    worker = ProjectionWorker({"toy": app}, [projection], store, batch_size=100)
    worker.catch_up()
    expected: dict[int, dict[str, int]] = {}
    for t in counters:
        expected.setdefault(partition_for(str(t.id), 2), {})[str(t.id)] = 5
    assert sorted(projection.finished) == sorted(expected.items())
    snapshot = store.snapshot("batch-totals")
    assert {k.partition(":")[2]: v for k, v in snapshot.items()} == {
        f"total:{t.id}": b"5" for t in counters
    }

    projection.finished.clear()
    assert worker.catch_up() == 0
    notifications = app.recorder.select_notifications(start=0, limit=100, inclusive_of_start=False)
    current = load_state(store, projection)
    assert current is not None
    batch = DecodedBatch(app.mapper, notifications)
    assert apply_batch(store, projection, current, "toy", 0, batch) is Outcome.NOTHING_NEW
    assert projection.finished == []
    stale = ProjectionState(current.info, [PartitionState(1), PartitionState(1)])
    assert apply_batch(store, projection, stale, "toy", 0, batch) is Outcome.STALE
    assert store.snapshot("batch-totals") == snapshot

    rebuild(store, projection, {"toy": app}, page_size=2)
    assert store.snapshot("batch-totals") == snapshot


def test_a_rebuild_holding_more_than_its_limit_writes_out_and_reads_back() -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(n % 5, n % 3 + 1) for n in range(40)], counters)
    projection = BatchTotals()
    ProjectionWorker({"toy": app}, [projection], store, batch_size=6).catch_up()
    incremental = store.snapshot(projection.name)
    projection.finished.clear()
    seen: list[RebuildProgress] = []
    projection.hold_limit = 2
    rebuild(store, projection, {"toy": app}, progress=seen.append, page_size=4)
    assert store.snapshot(projection.name) == incremental
    assert max(len(amounts) for _, amounts in projection.finished) <= 2 + 4
    assert len(projection.finished) > projection.partitions
    done = [p.done for p in seen]
    assert done == sorted(done)
    stages = [p.context for p in seen]
    last_page = len(stages) - stages[::-1].index("toy")
    assert all(p.done < p.total for p in seen[: last_page - 1])
    assert seen[-1].done == seen[-1].total
    first_write_out = stages.index(engine.DERIVING)
    assert stages[first_write_out + 1] == engine.WRITING
    assert "toy" in stages[first_write_out:]

    projection.hold_limit = None
    projection.finished.clear()
    seen.clear()
    rebuild(store, projection, {"toy": app}, progress=seen.append, page_size=4)
    assert store.snapshot(projection.name) == incremental
    touched = {partition_for(str(c.id), projection.partitions) for c in counters}
    assert len(projection.finished) == len(touched)
    assert [p.context for p in seen[-3:]] == [engine.DERIVING, engine.WRITING, engine.WRITING]
    assert all(p.done < p.total for p in seen[:-1])


def test_a_view_counts_the_writes_it_holds() -> None:
    view = ViewBatch(engine.EmptyGeneration(MemoryStore("t").layout), "v", 1, 0)
    view.set("s", 1)
    view.delete("gone")
    view.hset("h", "a", 1)
    view.hdel("h", "b")
    view.hincrby("h", "n", 2)
    view.sadd("set", "x")
    view.srem("set", "y")
    view.zadd("z", "m", 1.0)
    view.zrem("z", "q")
    assert view.op_count() == len(view.ops) == 9


class Exploding(CounterView):
    name = "exploding"
    fuse: int | None = None

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        if self.fuse is not None and event.originator_version == self.fuse:
            msg = "boom"
            raise RuntimeError(msg)
        super().handle(event, context, view)


def test_failure_mid_batch_writes_nothing_and_resumes() -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(0, 1), (0, 1)], counters)
    projection = Exploding()
    worker = ProjectionWorker({"toy": app}, [projection], store, batch_size=100)
    worker.catch_up()
    after_first = store.snapshot("exploding")
    record(app, [(0, 1), (0, 1), (0, 1), (0, 1)], counters)
    projection.fuse = 6
    with pytest.raises(RuntimeError, match="boom"):
        worker.catch_up()
    assert store.snapshot("exploding") == after_first
    projection.fuse = None
    worker.catch_up()
    incremental = store.snapshot("exploding")
    stats = incremental["p0:stats"]
    assert isinstance(stats, dict)
    assert stats[b"sum"] == b"5"
    rebuild(store, projection, {"toy": app})
    assert store.snapshot("exploding") == incremental


def test_rebuild_switches_generation_and_drops_old_keys() -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(0, 2), (0, 2), (0, 2), (1, 1), (1, 1)], counters)
    projection = CounterView()
    worker = ProjectionWorker({"toy": app}, [projection], store)
    worker.catch_up()
    first = store.meta("tally")
    assert first is not None
    before = store.snapshot("tally")
    seen: list[RebuildProgress] = []
    rebuild(store, projection, {"toy": app}, progress=seen.append, page_size=2)
    second = store.meta("tally")
    assert second is not None
    assert second.gen > first.gen
    assert store.snapshot("tally") == before
    old = (f":g{first.gen}:", f":g{first.gen}~")
    assert not [k for k in store.physical_keys() if any(o in k for o in old)]
    assert seen[-1].done == 5
    assert seen[-1].total == 5
    assert store.reader().hget("tally", "stats", "bumps") == b"3"
    record(app, [(0, 1)], counters)
    worker.catch_up()
    assert store.reader().hget("tally", "stats", "bumps") == b"4"


def test_rebuild_reads_nothing_and_writes_in_commits_with_the_positions_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = popo_app()
    store = MemoryStore("t")
    counters: list[Counter] = []
    record(app, [(0, 2), (1, 3), (2, 1), (0, -1), (1, 4), (3, 9), (2, 2)], counters)
    projection = PartitionedCounterView()
    worker = ProjectionWorker({"toy": app}, [projection], store)
    worker.catch_up()
    incremental = store.snapshot(projection.name)
    head = app.recorder.max_notification_id()
    commits: list[PartitionCommit] = []
    commit = store.commit

    def recorded(name: str, gen: int, batch: Sequence[PartitionCommit]) -> list[int]:
        commits.extend(batch)
        return commit(name, gen, batch)

    def unexpected(*args: object) -> None:
        raise AssertionError("a rebuild read the store")

    monkeypatch.setattr(store, "commit", recorded)
    for read in ("get", "hget", "hgetall", "smembers", "sismember", "read_many"):
        monkeypatch.setattr(store, read, unexpected)
    monkeypatch.setattr(engine, "REBUILD_COMMIT_OPS", 3)
    rebuild(store, projection, {"toy": app}, page_size=4)
    monkeypatch.undo()

    assert store.snapshot(projection.name) == incremental
    for part in range(projection.partitions):
        mine = [c for c in commits if c.partition == part]
        assert [dict(c.positions) for c in mine] == [{}] * (len(mine) - 1) + [{"toy": head}]
        assert all(len(c.ops) <= 3 for c in mine)
    assert len(commits) > projection.partitions
    record(app, [(0, 5)], counters)
    worker.catch_up()
    incremental_after = store.snapshot(projection.name)
    rebuild(store, projection, {"toy": app})
    assert store.snapshot(projection.name) == incremental_after


def test_a_reader_takes_a_generation_of_another_version_for_one_being_rebuilt() -> None:
    app = popo_app()
    store = MemoryStore("t")
    record(app, [(0, 2)], [])
    projection = CounterView()
    ProjectionWorker({"toy": app}, [projection], store).catch_up()
    assert store.reader({"tally": projection.version}).hgetall("tally", "stats")
    newer = store.reader({"tally": projection.version + 1})
    assert newer.physical_key("tally", "stats") is None
    with pytest.raises(ReadModelsUnavailable):
        newer.hgetall("tally", "stats")


def test_version_bump_triggers_rebuild() -> None:
    app = popo_app()
    store = MemoryStore("t")
    record(app, [(0, 2), (0, 2)], [])
    ProjectionWorker({"toy": app}, [CounterView()], store).catch_up()
    gen = store.meta("tally")

    class CounterView2(CounterView):
        version = 2

    ProjectionWorker({"toy": app}, [CounterView2()], store).catch_up()
    info = store.meta("tally")
    assert info is not None
    assert gen is not None
    assert (info.version, info.gen) == (2, gen.gen + 1)


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Counters]:
    app = Counters(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "toy.db"),
        }
    )
    yield app
    app.close()


def test_running_worker_on_sqlite_wait_lag_and_loss(sqlite_app: Counters) -> None:
    store = MemoryStore("t")
    projection = CounterView()
    worker = ProjectionWorker(
        {"toy": sqlite_app}, [projection], store, poll_interval=0.01, check_interval=0.05
    )
    counters: list[Counter] = []
    last = record(sqlite_app, [(0, 1)] * 5, counters)
    worker.start()
    try:
        worker.wait(f"toy:{last}", timeout=5)
        assert store.reader().get("tally", f"total:{counters[0].id}") == b"4"
        lag = worker.lag()["tally"]["toy"]
        assert (lag.events, lag.seconds, lag.position) == (0, 0.0, last)

        last = record(sqlite_app, [(0, 1)] * 3, counters)
        worker.wait({"toy": last}, timeout=5)
        assert store.reader().get("tally", f"total:{counters[0].id}") == b"7"

        before = store.snapshot("tally")
        store.flush()
        wait_until(lambda: store.snapshot("tally") == before, timeout=5.0)
        worker.wait({"toy": last}, timeout=5)
    finally:
        worker.stop()


def test_lag_when_behind() -> None:
    app = popo_app()
    store = MemoryStore("t")
    worker = ProjectionWorker({"toy": app}, [CounterView()], store)
    worker.catch_up()
    record(app, [(0, 1), (0, 1), (0, 1)], [])
    time.sleep(0.05)
    lag = worker.lag()["tally"]["toy"]
    assert (lag.position, lag.head, lag.events) == (0, 3, 3)
    assert lag.seconds >= 0.05
    with pytest.raises(TimeoutError):
        worker.wait("toy:3", timeout=0.05)
    worker.catch_up()
    worker.wait("toy:3", timeout=0.05)


def test_concurrent_rebuild_while_worker_runs() -> None:
    app = popo_app()
    store = MemoryStore("t")
    projection = CounterView()
    worker = ProjectionWorker({"toy": app}, [projection], store, poll_interval=0.005)
    counters: list[Counter] = []
    last = record(app, [(0, 1)] * 200, counters)
    worker.start()
    worker.wait({"toy": last}, timeout=5)
    stop = threading.Event()

    def write() -> None:
        while not stop.wait(0.001):
            record(app, [(0, 1)], counters)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(3):
            rebuild(store, projection, {"toy": app}, page_size=50)
        stop.set()
        writer.join()
        worker.wait({"toy": app.recorder.max_notification_id() or 0}, timeout=5)
    finally:
        stop.set()
        worker.stop()
    total = counters[0].version - 1
    assert store.reader().get("tally", f"total:{counters[0].id}") == str(total).encode()
    live = store.snapshot("tally")
    rebuild(store, projection, {"toy": app})
    assert store.snapshot("tally") == live


def test_parse_position() -> None:
    assert parse_position("immunization:1042") == {"immunization": 1042}
    assert parse_position("a:1, b:2") == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="invalid position"):
        parse_position("nope")
