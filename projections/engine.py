"""Generic projection engine: batches of notifications into read models, exactly once.

A projection reads and writes its logical keys through a :class:`ViewBatch`. The engine
applies a whole batch of notifications into per-partition batches, then commits each
partition's writes together with its new position in one atomic store operation that
is refused if another writer committed in between (see :mod:`projections.stores`).
A refused or interrupted batch leaves nothing behind; the next attempt resumes from the
stored position.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import gc
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, cast, runtime_checkable

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, Notification

from projections.forked import ForkedShare, spare_cores
from projections.stores import (
    COMMITTED,
    GenerationInfo,
    KeyLayout,
    Op,
    PartitionCommit,
    PartitionState,
    ReadModelStore,
    check_name,
)

DomainEvent = DomainEventProtocol[Any]
Value = bytes | str | int | float
Apps = Mapping[str, Application[Any]]
Read = (
    tuple[Literal["get", "hgetall", "smembers"], str]
    | tuple[Literal["hget", "sismember"], str, bytes | str]
)
"""A read announced by :meth:`Projection.prefetch`: (kind, logical key[, field or member])."""
Todo = Sequence[tuple[DomainEvent, int]]
"""Events to handle, each with its partition."""


def _b(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a natural key (e.g. a citizen key), for events and readers."""
    return zlib.crc32(key.encode()) % partitions if partitions > 1 else 0


class Projection:
    """Base class of read-model projections.

    Subclasses set ``name`` and ``contexts``, optionally ``topics`` (only these event
    topics are decoded and handled; positions still advance over the others),
    ``partitions`` with :meth:`partition_of`, and ``version`` (bump it when
    :meth:`handle` changes meaning, or derive it per instance from what else changes
    it, such as a policy: the worker then rebuilds the view).

    Events of different contexts are applied in no particular order relative to each
    other, so a projection over several contexts must not depend on that order.
    """

    name: ClassVar[str]
    contexts: ClassVar[tuple[str, ...]]
    topics: ClassVar[tuple[str, ...]] = ()
    partitions: ClassVar[int] = 1
    version: int = 1
    hold_limit: int | None = None
    """How many entities (see :meth:`held`) a rebuild holds in memory at most; beyond,
    it writes what it holds to the new generation and from then on reads from there
    what it needs, as an incremental batch does. None: no limit."""
    replayed_apart: ClassVar[frozenset[str]] = frozenset()
    """Contexts whose events each change only what the projection holds of their own
    aggregate's entity, and no key of a view (no counter, no index): a rebuild may have
    a forked child replay the events of a share of their aggregates
    (:meth:`replay_share`) while it replays the rest, and take in what the child
    returns (:meth:`absorb_share`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            check_name(cls.name)

    def partition_of(self, event: DomainEvent) -> int:
        """Partition holding this event's effects; use :func:`partition_for`."""
        return 0

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        raise NotImplementedError

    def prefetch(self, event: DomainEvent, context: str) -> Iterable[Read]:
        """Reads :meth:`handle` will make for this event, fetched for the whole batch (in a
        rebuild, for each :data:`REPLAY_CHUNK` of a read) in one pipelined round trip
        before any of its events is handled. Optional: a read not announced here costs
        its own round trip."""
        return ()

    def finish(self, view: ViewBatch) -> None:
        """Called once per partition batch, after its last :meth:`handle` and before its
        commit; its writes are committed with the batch's, atomically. A rebuild replays
        every context into one batch per partition, so it is called once at the end (and
        whenever the batch holds more than :attr:`hold_limit`).

        Lets :meth:`handle` record cheap changes (e.g. in ``view.scratch``) and derive
        the costly documents here, once per batch instead of once per event. It is not
        called when a handler raised, and a refused commit discards it with the batch.
        """

    def held(self, view: ViewBatch) -> int:
        """How many entities (e.g. citizens) the batch holds for :meth:`finish`: what a
        rebuild's :attr:`hold_limit` counts."""
        return 0

    def replay_share(
        self, context: str, todos: Iterator[Todo], views: Sequence[ViewBatch], prefetch: bool
    ) -> Any:
        """In a forked child: handle each of `todos` in turn, consuming them once (events
        of a context in :attr:`replayed_apart`, with their partitions, a chunk at a time)
        into the child's copies of `views` (with `prefetch` as :func:`handle_events`
        does), and return what :meth:`absorb_share` needs of the entities they changed,
        in a form :mod:`marshal` carries. It must read nothing but through the views."""
        raise NotImplementedError

    def absorb_share(
        self, context: str, share: Any, views: Sequence[ViewBatch], prefetch: bool
    ) -> None:
        """Take into `views` what :meth:`replay_share` returned, as if its events had
        been handled here (with `prefetch`, reading what it needs first, in one round
        trip per view)."""
        raise NotImplementedError


class _Hash:
    __slots__ = ("complete", "dirty", "fields", "incr")

    def __init__(self, complete: bool = False) -> None:
        self.fields: dict[bytes, bytes | None] = {}
        """Known values (None: absent), whether read or written."""
        self.dirty: set[bytes] = set()
        """Fields whose known value must be written."""
        self.incr: dict[bytes, int] = {}
        """Increments of fields whose value is not known."""
        self.complete = complete


class _Set:
    __slots__ = ("added", "complete", "dropped", "members", "removed")

    def __init__(self, complete: bool = False) -> None:
        self.members: set[bytes] = set()
        self.removed: set[bytes] = set()
        """Known to be absent (only meaningful while not complete)."""
        self.added: set[bytes] = set()
        self.dropped: set[bytes] = set()
        self.complete = complete


class _ZSet:
    __slots__ = ("added", "dropped")

    def __init__(self) -> None:
        self.added: dict[bytes, float] = {}
        self.dropped: set[bytes] = set()


class StoreReads(Protocol):
    """The reads a :class:`ViewBatch` makes of its store (physical keys)."""

    layout: KeyLayout

    def get(self, key: str) -> bytes | None: ...

    def hget(self, key: str, field: bytes) -> bytes | None: ...

    def hgetall(self, key: str) -> dict[bytes, bytes]: ...

    def smembers(self, key: str) -> builtins.set[bytes]: ...

    def sismember(self, key: str, member: bytes) -> bool: ...

    def read_many(self, reads: Sequence[tuple[str, str, bytes]]) -> list[object]: ...


class EmptyGeneration:
    """The reads of a generation known to hold nothing yet (a rebuild's), answered
    without asking the store."""

    def __init__(self, layout: KeyLayout) -> None:
        self.layout = layout

    def get(self, key: str) -> bytes | None:
        return None

    def hget(self, key: str, field: bytes) -> bytes | None:
        return None

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return {}

    def smembers(self, key: str) -> builtins.set[bytes]:
        return set()

    def sismember(self, key: str, member: bytes) -> bool:
        return False

    def read_many(self, reads: Sequence[tuple[str, str, bytes]]) -> list[object]:
        return [None] * len(reads)


class ViewBatch:
    """One partition's pending changes for a batch, with reads that see them.

    Reads not answered by the batch itself go to the store once per key (or field)
    and are cached for the rest of the batch. Changes are coalesced per key, field and
    member, so a batch sends its net effect: a counter bumped 500 times is one
    HINCRBY (or one HSET when its value is known), and ``hincrby`` never needs a read.
    """

    def __init__(self, store: StoreReads, name: str, gen: int, partition: int) -> None:
        self._store = store
        self._prefix = store.layout.data_prefix(name, gen, partition)
        self.partition = partition
        self._cleared: set[str] = set()
        self._strings: dict[str, bytes | None] = {}
        self._dirty_strings: set[str] = set()
        self._hashes: dict[str, _Hash] = {}
        self._sets: dict[str, _Set] = {}
        self._zsets: dict[str, _ZSet] = {}
        self.scratch: dict[str, Any] = {}
        """The projection's own memory for this batch, e.g. what :meth:`Projection.finish`
        completes; dropped with the batch."""

    @property
    def ops(self) -> list[Op]:
        """The batch's net writes: deletions first, then each key's changes."""
        return list(self.iter_ops())

    def iter_ops(self) -> Iterator[Op]:
        """:attr:`ops` one at a time: a large batch is written without a copy of them all."""
        p = self._prefix
        for k in self._cleared:
            yield ("D", p + k, b"", b"")
        for k in self._dirty_strings:
            yield ("S", p + k, self._strings[k] or b"", b"")
        for k, h in self._hashes.items():
            key = p + k
            for f in h.dirty:
                v = h.fields[f]
                yield ("X", key, f, b"") if v is None else ("H", key, f, v)
            for f, n in h.incr.items():
                yield ("I", key, f, str(n).encode())
        for k, s in self._sets.items():
            key = p + k
            yield from (("A", key, m, b"") for m in s.added)
            yield from (("R", key, m, b"") for m in s.dropped)
        for k, z in self._zsets.items():
            key = p + k
            yield from (("Z", key, m, repr(score).encode()) for m, score in z.added.items())
            yield from (("Q", key, m, b"") for m in z.dropped)

    def op_count(self) -> int:
        """How many writes :attr:`ops` holds."""
        return (
            len(self._cleared)
            + len(self._dirty_strings)
            + sum(len(h.dirty) + len(h.incr) for h in self._hashes.values())
            + sum(len(s.added) + len(s.dropped) for s in self._sets.values())
            + sum(len(z.added) + len(z.dropped) for z in self._zsets.values())
        )

    def preload(self, reads: Iterable[Read]) -> None:
        """Fetch, in one round trip, what the given reads need and the batch lacks."""
        wanted: dict[tuple[str, str, bytes], None] = {}
        for read in reads:
            kind, key = read[0], read[1]
            arg = _b(read[2]) if len(read) == 3 else b""
            if kind == "get":
                known = key in self._strings
            elif kind in ("hgetall", "hget"):
                h = self._hashes.get(key)
                known = h is not None and (h.complete or (kind == "hget" and arg in h.fields))
            else:
                s = self._sets.get(key)
                known = s is not None and (
                    s.complete or (kind == "sismember" and (arg in s.members or arg in s.removed))
                )
            if not known:
                wanted[(kind, key, arg)] = None
        if not wanted:
            return
        physical = [(kind, self._prefix + key, arg) for kind, key, arg in wanted]
        values = self._store.read_many(physical)
        for (what, key, arg), value in zip(wanted, values, strict=True):
            if what == "get":
                self._strings[key] = value if isinstance(value, bytes) else None
            elif what == "hgetall":
                self._merge_hash(key, value if isinstance(value, dict) else {})
            elif what == "smembers":
                self._merge_set(key, value if isinstance(value, set) else set())
            elif what == "hget":
                self._merge_field(key, arg, value if isinstance(value, bytes) else None)
            else:
                s = self._set(key)
                (s.members if value else s.removed).add(arg)

    def _merge_hash(self, key: str, base: Mapping[bytes, bytes]) -> _Hash:
        h = self._hash(key)
        if not h.complete:
            for f, v in base.items():
                h.fields.setdefault(f, v)
            for f, n in h.incr.items():
                h.fields[f] = str(int(h.fields.get(f) or b"0") + n).encode()
                h.dirty.add(f)
            h.incr.clear()
            h.complete = True
        return h

    def _merge_field(self, key: str, field: bytes, base: bytes | None) -> bytes | None:
        h = self._hash(key)
        if field in h.fields or h.complete:
            return h.fields.get(field)
        value = base
        pending = h.incr.pop(field, None)
        if pending is not None:
            value = str(int(value or b"0") + pending).encode()
            h.dirty.add(field)
        h.fields[field] = value
        return value

    def _merge_set(self, key: str, base: builtins.set[bytes]) -> _Set:
        s = self._set(key)
        if not s.complete:
            s.members |= base - s.removed
            s.complete = True
        return s

    def get(self, key: str) -> bytes | None:
        if key in self._strings:
            return self._strings[key]
        value = self._store.get(self._prefix + key)
        self._strings[key] = value
        return value

    def set(self, key: str, value: Value) -> None:
        self._strings[key] = _b(value)
        self._dirty_strings.add(key)
        self._hashes.pop(key, None)
        self._sets.pop(key, None)
        self._zsets.pop(key, None)

    def delete(self, key: str) -> None:
        self._cleared.add(key)
        self._strings[key] = None
        self._dirty_strings.discard(key)
        self._hashes[key] = _Hash(complete=True)
        self._sets[key] = _Set(complete=True)
        self._zsets.pop(key, None)

    def _hash(self, key: str) -> _Hash:
        h = self._hashes.get(key)
        if h is None:
            h = self._hashes[key] = _Hash()
        return h

    def hget(self, key: str, field: Value) -> bytes | None:
        f = _b(field)
        h = self._hash(key)
        if f in h.fields:
            return h.fields[f]
        if h.complete:
            return None
        return self._merge_field(key, f, self._store.hget(self._prefix + key, f))

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        h = self._hash(key)
        if not h.complete:
            h = self._merge_hash(key, self._store.hgetall(self._prefix + key))
        return {f: v for f, v in h.fields.items() if v is not None}

    def hset(self, key: str, field: Value, value: Value) -> None:
        f = _b(field)
        h = self._hash(key)
        h.fields[f] = _b(value)
        h.dirty.add(f)
        h.incr.pop(f, None)

    def hdel(self, key: str, field: Value) -> None:
        f = _b(field)
        h = self._hash(key)
        h.fields[f] = None
        h.dirty.add(f)
        h.incr.pop(f, None)

    def hincrby(self, key: str, field: Value, amount: int = 1) -> None:
        f = field if isinstance(field, bytes) else _b(field)
        h = self._hashes.get(key) or self._hash(key)
        if f in h.fields or h.complete:
            try:
                h.fields[f] = str(int(h.fields.get(f) or b"0") + amount).encode()
            except ValueError:
                msg = f"hincrby on non-integer field {f!r} of {key}"
                raise ValueError(msg) from None
            h.dirty.add(f)
        else:
            h.incr[f] = h.incr.get(f, 0) + amount

    def _set(self, key: str) -> _Set:
        s = self._sets.get(key)
        if s is None:
            s = self._sets[key] = _Set()
        return s

    def sadd(self, key: str, member: Value) -> None:
        m = _b(member)
        s = self._set(key)
        s.members.add(m)
        s.removed.discard(m)
        s.added.add(m)
        s.dropped.discard(m)

    def srem(self, key: str, member: Value) -> None:
        m = _b(member)
        s = self._set(key)
        s.members.discard(m)
        s.removed.add(m)
        s.dropped.add(m)
        s.added.discard(m)

    def smembers(self, key: str) -> builtins.set[bytes]:
        s = self._set(key)
        if not s.complete:
            s = self._merge_set(key, self._store.smembers(self._prefix + key))
        return set(s.members)

    def sismember(self, key: str, member: Value) -> bool:
        m = _b(member)
        s = self._set(key)
        if m in s.members:
            return True
        if s.complete or m in s.removed:
            return False
        found = self._store.sismember(self._prefix + key, m)
        (s.members if found else s.removed).add(m)
        return found

    def _zset(self, key: str) -> _ZSet:
        z = self._zsets.get(key)
        if z is None:
            z = self._zsets[key] = _ZSet()
        return z

    def zadd(self, key: str, member: Value, score: float) -> None:
        m = _b(member)
        z = self._zset(key)
        z.added[m] = float(score)
        z.dropped.discard(m)

    def zrem(self, key: str, member: Value) -> None:
        m = _b(member)
        z = self._zset(key)
        z.added.pop(m, None)
        z.dropped.add(m)


@dataclass
class ProjectionState:
    """What a writer knows about the generation it writes to."""

    info: GenerationInfo
    parts: list[PartitionState]

    def position(self, context: str) -> int:
        """The lowest position of the context over all partitions."""
        return min(p.positions.get(context, 0) for p in self.parts)


class Outcome(enum.Enum):
    APPLIED = "applied"
    NOTHING_NEW = "nothing new"
    BEHIND = "behind"
    """The projection's position is below the batch's start: the reader must rewind."""
    STALE = "stale"
    """Another writer or a generation switch got there first: reload the state."""


class DecodedBatch:
    """Notifications of one context with their domain events, decoded at most once."""

    def __init__(self, mapper: Mapper[Any], notifications: Sequence[Notification]) -> None:
        self.mapper = mapper
        self.notifications = notifications
        self._events: dict[int, DomainEvent] = {}

    def event(self, index: int) -> DomainEvent:
        event = self._events.get(index)
        if event is None:
            event = self._events[index] = self.mapper.to_domain_event(self.notifications[index])
        return event


def _unapplied_events(
    projection: Projection, context: str, batch: DecodedBatch, parts: Sequence[PartitionState]
) -> list[tuple[DomainEvent, int]]:
    """The batch's events of the projection's topics, each with its partition, but for
    those at or below that partition's stored position."""
    topics, partitioned = frozenset(projection.topics), len(parts) > 1
    todo: list[tuple[DomainEvent, int]] = []
    for index, notification in enumerate(batch.notifications):
        if topics and notification.topic not in topics:
            continue
        event = batch.event(index)
        part = projection.partition_of(event) if partitioned else 0
        if notification.id > parts[part].positions.get(context, 0):
            todo.append((event, part))
    return todo


def handle_events(
    projection: Projection,
    context: str,
    todo: Todo,
    views: Mapping[int, ViewBatch] | Sequence[ViewBatch],
    prefetch: bool,
) -> None:
    """Handle `todo` into the views of their partitions; with `prefetch`, the reads
    :meth:`Projection.prefetch` announces are fetched first, one round trip per view."""
    if prefetch and type(projection).prefetch is not Projection.prefetch:
        reads: dict[int, list[Read]] = {}
        for event, part in todo:
            reads.setdefault(part, []).extend(projection.prefetch(event, context))
        for part, wanted in reads.items():
            views[part].preload(wanted)
    for event, part in todo:
        projection.handle(event, context, views[part])


def apply_batch(
    store: ReadModelStore,
    projection: Projection,
    state: ProjectionState,
    context: str,
    after: int,
    batch: DecodedBatch,
) -> Outcome:
    """Apply notifications ``(after, last]`` of a context and commit them atomically.

    Events at or below a partition's stored position are skipped, so redelivery of
    a batch, or of part of one, changes nothing. ``state`` is updated on success.
    """
    notifications = batch.notifications
    if not notifications:
        return Outcome.NOTHING_NEW
    parts = state.parts
    if any(p.positions.get(context, 0) < after for p in parts):
        return Outcome.BEHIND
    last = notifications[-1].id
    if all(p.positions.get(context, 0) >= last for p in parts):
        return Outcome.NOTHING_NEW
    name, gen = projection.name, state.info.gen
    todo = _unapplied_events(projection, context, batch, parts)
    views: dict[int, ViewBatch] = {}
    for part in sorted({part for _, part in todo}):
        views[part] = ViewBatch(store, name, gen, part)
    handle_events(projection, context, todo, views, prefetch=True)
    if type(projection).finish is not Projection.finish:
        for view in views.values():
            projection.finish(view)
    commits = [
        PartitionCommit(i, p.version, {context: last}, views[i].ops if i in views else ())
        for i, p in enumerate(parts)
        if p.positions.get(context, 0) < last
    ]
    results = store.commit(name, gen, commits)
    for c, result in zip(commits, results, strict=True):
        if result == COMMITTED:
            part_state = parts[c.partition]
            part_state.version += 1
            part_state.positions[context] = last
    return Outcome.APPLIED if all(r == COMMITTED for r in results) else Outcome.STALE


def load_state(store: ReadModelStore, projection: Projection) -> ProjectionState | None:
    """The current generation's state if it matches the projection's configuration."""
    info = store.meta(projection.name)
    if info is None or info.partitions != projection.partitions:
        return None
    if info.version != projection.version:
        return None
    parts = store.partition_states(projection.name, info)
    return None if parts is None else ProjectionState(info, parts)


DERIVING = "deriving"
WRITING = "writing"


@dataclass(frozen=True)
class RebuildProgress:
    context: str
    """The context being replayed, or :data:`DERIVING` then :data:`WRITING` while what
    the replay holds is derived and written (at the end, and whenever it holds more than
    the projection's :attr:`~Projection.hold_limit`)."""
    done: int
    total: int
    """Steps: one per event (the sum of the contexts' max notification ids when the
    rebuild began: an upper bound), and one per entity held so far, derived and written."""
    rate: float
    """Steps per second since the start."""
    eta: float
    """Seconds left at the current rate."""


class RebuildConflictError(Exception):
    """Another rebuild switched the projection while this one ran."""


class _Meter:
    """Counts a rebuild's steps for its progress callback."""

    def __init__(self, progress: Callable[[RebuildProgress], None] | None, events: int) -> None:
        self._progress = progress
        self._events = events
        self._started = time.monotonic()
        self.replayed = 0
        self.written = 0
        """Entities derived and written."""

    def report(self, what: str, held: int, share_written: float = 0.0) -> None:
        """`held`: entities held and not yet written, of which the share `share_written` is."""
        if self._progress is None:
            return
        done = self.replayed + self.written + round(held * share_written)
        total = max(self._events, self.replayed) + self.written + held
        rate = done / max(time.monotonic() - self._started, 1e-9)
        eta = (total - done) / rate if rate else 0.0
        self._progress(RebuildProgress(what, done, total, rate, eta))


REBUILD_COMMIT_OPS = 20_000
"""Writes per commit when a rebuild stores what it derived."""


def _write_out(
    store: ReadModelStore,
    projection: Projection,
    state: ProjectionState,
    views: Sequence[ViewBatch],
    touched: Iterable[int],
    reached: Mapping[str, int],
    meter: _Meter,
) -> None:
    """Derive what the touched views hold (:meth:`Projection.finish`), then write each
    view in commits of at most `REBUILD_COMMIT_OPS`; a non-empty `reached` (the final
    write-out) is every partition's positions, with its last commit. Readers see none
    of it before the switch."""
    name, gen = projection.name, state.info.gen
    held = sum(projection.held(view) for view in views)
    meter.report(DERIVING, held)
    if type(projection).finish is not Projection.finish:
        for part in sorted(touched):
            projection.finish(views[part])
    for part, view in enumerate(views):
        count = view.op_count()
        if not count and not reached:
            continue
        part_state = state.parts[part]
        ops = view.iter_ops()
        chunk, written = list(islice(ops, REBUILD_COMMIT_OPS)), 0
        while True:
            following = list(islice(ops, REBUILD_COMMIT_OPS))
            positions = {} if following else reached
            commit = PartitionCommit(part, part_state.version, positions, chunk)
            if store.commit(name, gen, [commit]) != [COMMITTED]:
                msg = f"generation {gen} of {name} was written by someone else"
                raise RebuildConflictError(msg)
            part_state.version += 1
            written += len(chunk)
            share = written / count if count else 1.0
            meter.report(WRITING, held, (part + share) / len(views))
            if not following:
                break
            chunk = following
        part_state.positions.update(reached)
    meter.written += held


SHARE_PAGES = 25
"""Pages a rebuild reads at once of a context whose events a forked child replays in
part (see :attr:`Projection.replayed_apart`)."""
SHARE_FROM = 4_000
"""Notifications a rebuild's read must hold for a forked child to replay a share of
them: below, forking costs more than it saves."""


class Share(NamedTuple):
    """The aggregates whose id's last byte is below `cut` (`below`), or the others."""

    cut: int
    below: bool


@runtime_checkable
class ShareReader(Protocol):
    """A recorder that reads the notifications of a share of the aggregates, also
    through a connection of its own (a forked child's)."""

    def select_share(
        self, after: int, stop: int, share: Share, *, own_connection: bool = False
    ) -> Sequence[Notification]:
        """The share's notifications after `after` up to `stop`, in order."""
        ...


class _Shares:
    """Which aggregates a forked child replays, resized after each read towards both
    sides taking as long."""

    _SCALE = 256

    def __init__(self) -> None:
        self._cut = self._SCALE // 2

    def sides(self) -> tuple[Share, Share]:
        """(the parent's share, the child's)."""
        return Share(self._cut, False), Share(self._cut, True)

    def balance(self, ours: int, our_seconds: float, theirs: int, their_seconds: float) -> None:
        """Moves the child's share halfway to where both sides would have taken as long."""
        if min(ours, theirs) == 0 or min(our_seconds, their_seconds) <= 0:
            return
        our_cost, their_cost = our_seconds / ours, their_seconds / theirs
        even = our_cost / (our_cost + their_cost)
        share = (self._cut / self._SCALE + even) / 2
        self._cut = round(min(max(share, 0.1), 0.9) * self._SCALE)


REPLAY_CHUNK = 1_000
"""Notifications a rebuild decodes and handles at a time: a chunk's events are let go as
the replay moves on, so later chunks reuse the memory they took instead of taking it anew
from the system (page faults were a tenth of a rebuild's time with whole reads decoded at
once)."""


def _todos(
    projection: Projection,
    context: str,
    mapper: Mapper[Any],
    notifications: Sequence[Notification],
    parts: Sequence[PartitionState],
    touched: builtins.set[int],
) -> Iterator[Todo]:
    """The notifications' unapplied events, decoded a chunk at a time; the partitions
    of each chunk's events are added to `touched` as it is yielded."""
    for start in range(0, len(notifications), REPLAY_CHUNK):
        batch = DecodedBatch(mapper, notifications[start : start + REPLAY_CHUNK])
        todo = _unapplied_events(projection, context, batch, parts)
        touched.update(part for _, part in todo)
        yield todo


def _replay(
    projection: Projection,
    context: str,
    mapper: Mapper[Any],
    notifications: Sequence[Notification],
    parts: Sequence[PartitionState],
    views: Sequence[ViewBatch],
    prefetch: bool,
) -> builtins.set[int]:
    """Handles the notifications' unapplied events into `views`; the partitions touched."""
    touched: builtins.set[int] = set()
    for todo in _todos(projection, context, mapper, notifications, parts, touched):
        handle_events(projection, context, todo, views, prefetch=prefetch)
    return touched


def _replay_share(
    projection: Projection,
    context: str,
    mapper: Mapper[Any],
    read: Callable[[], Sequence[Notification]],
    parts: Sequence[PartitionState],
    views: Sequence[ViewBatch],
    prefetch: bool,
) -> tuple[Any, list[int], int, float]:
    """In a forked child: what :meth:`Projection.replay_share` returns for the unapplied
    events of what `read()` reads, the partitions touched, the notifications read and
    the seconds it all took."""
    started = time.perf_counter()
    notifications = read()
    touched: builtins.set[int] = set()
    todos = _todos(projection, context, mapper, notifications, parts, touched)
    writes = [view.op_count() for view in views]
    share = projection.replay_share(context, todos, views, prefetch)
    if [view.op_count() for view in views] != writes:
        raise RuntimeError(f"{projection.name} wrote to its views replaying a share")
    return share, sorted(touched), len(notifications), time.perf_counter() - started


def _replay_shared(
    projection: Projection,
    context: str,
    app: Application[Any],
    after: int,
    stop: int,
    shares: _Shares,
    parts: Sequence[PartitionState],
    views: Sequence[ViewBatch],
    prefetch: bool,
) -> tuple[builtins.set[int], int]:
    """Replays the notifications after `after` up to `stop` into `views`: those of the
    child's share of the aggregates in a forked child, which reads them through a
    connection of its own, the others here. The partitions touched, and how many
    notifications there were."""
    recorder = cast(ShareReader, app.recorder)
    ours, theirs = shares.sides()
    read_theirs = partial(recorder.select_share, after, stop, theirs, own_connection=True)
    replay_theirs = partial(
        _replay_share, projection, context, app.mapper, read_theirs, parts, views, prefetch
    )
    child = ForkedShare(replay_theirs)
    started = time.perf_counter()
    notifications = recorder.select_share(after, stop, ours)
    touched = _replay(projection, context, app.mapper, notifications, parts, views, prefetch)
    our_seconds = time.perf_counter() - started
    shared = child.result_beside(our_seconds)
    if shared is None:
        their_notifications = recorder.select_share(after, stop, theirs)
        touched |= _replay(
            projection, context, app.mapper, their_notifications, parts, views, prefetch
        )
        return touched, len(notifications) + len(their_notifications)
    absorbing = time.perf_counter()
    share, their_parts, count, their_seconds = shared
    projection.absorb_share(context, share, views, prefetch)
    our_seconds += time.perf_counter() - absorbing
    shares.balance(len(notifications), our_seconds, count, their_seconds)
    return touched | set(their_parts), len(notifications) + count


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off (process-wide) while the block runs.

    A rebuild holds up to its projection's hold limit of entities, each made of several
    containers, and creates almost no cyclic garbage: left on, the collector would
    traverse what is held again and again as it grows (about a third of a rebuild's
    time). Memory freed by reference counting is freed as before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rebuild(
    store: ReadModelStore,
    projection: Projection,
    apps: Apps,
    progress: Callable[[RebuildProgress], None] | None = None,
    page_size: int = 2000,
    drop_old: bool = True,
    catch_up_passes: int = 3,
    share_from: int = SHARE_FROM,
) -> ProjectionState:
    """Replay every context from the start into a new generation, then switch to it.

    Each context is replayed up to its head when the rebuild began, then up to the new
    head, at most ``catch_up_passes`` times, so a rebuild ends under constant writes;
    whatever arrives later is applied to the new generation by the live worker.

    The replay is one batch per partition, held in memory: the new generation is known
    to be empty, so nothing is read from the store, and :meth:`Projection.finish`
    derives what it defers once, after every context. The result is then written in
    large commits, the positions with the last. When, after a page, the batches hold
    more than the projection's :attr:`~Projection.hold_limit` entities, what they hold
    is derived and written (readers still see the old generation) and the replay goes
    on in new batches that read what they need from the new generation, each chunk's
    reads prefetched, as incremental batches do: memory stays bounded whatever the size
    of the store.

    The contexts in :attr:`~Projection.replayed_apart` whose recorder is a
    :class:`ShareReader` are replayed ``SHARE_PAGES`` pages of ids at a time, on two
    cores: a forked child reads the events of a share of the aggregates through a
    connection of its own and replays them while the rebuild replays the others, then
    the rebuild takes in what the child returns (or, if the child failed, reads and
    replays its share itself). The share follows how fast each side went. One process
    alone would be bound by reading and decoding. Once something was written out, both
    sides prefetch what they read back, the child through a store connection of its own.

    Safe while live workers run: they keep updating the old generation until the
    switch, which retires it so their next commit is refused; they then reload and
    continue in the new generation from the positions the rebuild reached. The old
    generation's keys are deleted afterwards.
    """
    name, partitions, limit = projection.name, projection.partitions, projection.hold_limit
    old = store.meta(name)
    gen = store.new_generation(name, partitions)
    info = GenerationInfo(gen, partitions, projection.version)
    state = ProjectionState(info, [PartitionState(1) for _ in range(partitions)])
    empty = EmptyGeneration(store.layout)
    views = [ViewBatch(empty, name, gen, part) for part in range(partitions)]
    spilled = False
    touched: builtins.set[int] = set()
    heads = {ctx: apps[ctx].recorder.max_notification_id() or 0 for ctx in projection.contexts}
    reached = dict.fromkeys(projection.contexts, 0)
    meter = _Meter(progress, sum(heads.values()))

    def replayed(context: str, last: int, count: int, parts: builtins.set[int]) -> None:
        """Counts a read replayed up to `last`; writes out what is held over the limit."""
        nonlocal views, touched, spilled
        touched |= parts
        reached[context] = last
        meter.replayed += count
        held = sum(projection.held(view) for view in views)
        meter.report(context, held)
        if limit is not None and held > limit:
            _write_out(store, projection, state, views, touched, {}, meter)
            views = [ViewBatch(store, name, gen, p) for p in range(partitions)]
            touched, spilled = set(), True

    try:
        with (
            _collector_paused(),
            ThreadPoolExecutor(1, thread_name_prefix=f"rebuild-{name}") as pool,
        ):
            for context in projection.contexts:
                app = apps[context]
                apart = (
                    context in projection.replayed_apart
                    and isinstance(app.recorder, ShareReader)
                    and spare_cores() > 0
                )
                shares = _Shares() if apart else None
                after, target = 0, heads[context]
                for _ in range(catch_up_passes):
                    if target <= after:
                        break
                    while shares and target - after >= share_from:
                        stop = min(target, after + page_size * SHARE_PAGES)
                        parts, count = _replay_shared(
                            *(projection, context, app, after, stop, shares, state.parts),
                            views,
                            prefetch=spilled,
                        )
                        replayed(context, stop, count, parts)
                        after = stop

                    def page(
                        start: int, app: Application[Any] = app, stop: int = target
                    ) -> Sequence[Notification]:
                        return app.recorder.select_notifications(
                            start=start, limit=page_size, stop=stop, inclusive_of_start=False
                        )

                    notifications = page(after) if after < target else []
                    while notifications:
                        # The database reads the next page while this one is replayed.
                        following = pool.submit(page, notifications[-1].id)
                        parts = _replay(
                            projection, context, app.mapper, notifications, state.parts, views,
                            spilled,
                        )  # fmt: skip
                        after = notifications[-1].id
                        replayed(context, after, len(notifications), parts)
                        notifications = following.result()
                    target = app.recorder.max_notification_id() or 0
            final = {c: n for c, n in reached.items() if n}
            _write_out(store, projection, state, views, touched, final, meter)
        switched = store.switch(name, old.gen if old else None, info)
        if not switched:
            msg = f"{name} was switched to another generation during the rebuild"
            raise RebuildConflictError(msg)
    except BaseException:
        store.drop_generation(name, gen, partitions)
        raise
    if drop_old and old is not None:
        store.drop_generation(name, old.gen, old.partitions)
    return state


def parse_position(position: Mapping[str, int] | str) -> dict[str, int]:
    """``{"immunization": 1042}`` from itself or from ``"immunization:1042[,ctx:n...]"``."""
    if not isinstance(position, str):
        return dict(position)
    out: dict[str, int] = {}
    for part in position.split(","):
        context, _, number = part.strip().rpartition(":")
        if not context or not number.isdigit():
            msg = f"invalid position {part!r}: expected '<context>:<notification id>'"
            raise ValueError(msg)
        out[context] = max(out.get(context, 0), int(number))
    return out


def positions(store: ReadModelStore, projection: Projection) -> dict[str, int] | None:
    """The projection's current positions (lowest over partitions); None if unbuilt, or
    built by another version of it (readers of this version find nothing there yet)."""
    state = load_state(store, projection)
    return None if state is None else {ctx: state.position(ctx) for ctx in projection.contexts}


def wait_for(
    store: ReadModelStore,
    projections: Iterable[Projection],
    position: Mapping[str, int] | str,
    timeout: float = 5.0,
) -> None:
    """Block until every projection following a context has reached its position.

    Reads the stored positions, so it works from any process sharing the store.
    Raises TimeoutError.
    """
    wanted = parse_position(position)
    pending = [p for p in projections if any(ctx in wanted for ctx in p.contexts)]
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        still = []
        for projection in pending:
            reached = positions(store, projection)
            if reached is None or any(
                reached[ctx] < n for ctx, n in wanted.items() if ctx in projection.contexts
            ):
                still.append(projection)
        pending = still
        if not pending:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            names = ", ".join(p.name for p in pending)
            msg = f"timed out waiting for {names} to reach {wanted}"
            raise TimeoutError(msg)
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


@dataclass(frozen=True)
class Lag:
    position: int
    head: int
    events: int
    """Notifications recorded after the position (upper bound: ids may have gaps)."""
    seconds: float
    """Age of the oldest event not yet applied; 0 when caught up."""


def _timestamp(event: DomainEvent) -> float | None:
    ts = getattr(event, "timestamp", None)
    return ts.timestamp() if isinstance(ts, datetime) else None


def measure_lag(
    store: ReadModelStore, apps: Apps, projections: Iterable[Projection]
) -> dict[str, dict[str, Lag]]:
    """Per projection and context: how far the stored position is behind the head."""
    heads: dict[str, int] = {}
    out: dict[str, dict[str, Lag]] = {}
    now = time.time()
    for projection in projections:
        reached = positions(store, projection) or {}
        per_context: dict[str, Lag] = {}
        for ctx in projection.contexts:
            app = apps[ctx]
            if ctx not in heads:
                heads[ctx] = app.recorder.max_notification_id() or 0
            head, pos = heads[ctx], reached.get(ctx, 0)
            seconds = 0.0
            if pos < head:
                nxt = app.recorder.select_notifications(
                    start=pos, limit=1, inclusive_of_start=False
                )
                ts = _timestamp(app.mapper.to_domain_event(nxt[0])) if nxt else None
                seconds = max(now - ts, 0.0) if ts is not None else 0.0
            per_context[ctx] = Lag(pos, head, max(head - pos, 0), seconds)
        out[projection.name] = per_context
    return out
