"""Writing an import batch straight into the `population` application's own event table.

Each batch is one transaction that follows the library's write protocol: on PostgreSQL it
takes ``LOCK TABLE <app>_events IN EXCLUSIVE MODE`` (so notification ids are issued in
commit order), COPYs the events in binary and issues the table's NOTIFY; on SQLite it
takes the database's write lock and inserts with the recorder's own statement. The import
index (see `index`) is updated in the same transaction, after folding in the events any
other writer committed since the index's stored position, so it is exact whenever the
lock is held. `rebuild` derives it from the events alone.

On PostgreSQL a batch's rows are first COPYed into a temporary table of the session, so
that the run's duplicate check (another temporary table of the citizens accepted so far)
and the classification against the index are joins, and the new citizens' index rows an
INSERT from it: only the lines of new and changed rows come back to Python.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import tempfile
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper, Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import sql
from psycopg.rows import TupleRow, tuple_row

from infrastructure.population.encoding import (
    HASH_BYTES,
    ID_BYTES,
    PROBE_BYTES,
    EncodedChunk,
    event_fields,
    event_tuple,
)
from infrastructure.population.index import (
    CITIZEN_TOPICS,
    DEATH,
    FieldHasher,
    Hashes,
    IndexRow,
    fold,
    unpack_hashes,
)

CATCH_UP_PAGE = 1000
REBUILD_PAGE = 20_000
LOCK_TIMEOUT_S = 30
TEMP_BUFFERS = "128MB"
"""Memory of the importing session for its temporary tables, before they spill to disk
(kept as it is when the session already used temporary tables)."""

_HASH_COLUMNS = (
    "name_hash",
    "birth_hash",
    "sex_hash",
    "residence_hash",
    "phone_hash",
    "death_hash",
)
_INDEX_COLUMNS = ("citizen_id", "version", *_HASH_COLUMNS, "registered_at")
_PROBE = "pg_temp.population_import_rows"
_SEEN = "pg_temp.population_import_seen"
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PGCOPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch's valid rows, in line order, as the parallel blobs of `EncodedChunk`."""

    lines: array[int]
    ids: bytes
    hashes: bytes
    deaths: bytes
    probes: bytes
    events: list[bytes]
    """Each row's events as a new citizen."""
    by_id: list[int]
    """The rows' positions in citizen id order: the order in which they are written, so
    that inserting them walks each primary key in key order."""

    @classmethod
    def of(cls, chunks: Iterable[EncodedChunk]) -> Rows:
        chunks = list(chunks)
        lines = array("q")
        events: list[bytes] = []
        for chunk in chunks:
            lines.extend(chunk.lines)
            data, ends = chunk.events, chunk.event_ends
            events.extend(data[start:end] for start, end in zip((0, *ends), ends, strict=False))
        return cls._sorted(
            lines,
            b"".join(c.ids for c in chunks),
            b"".join(c.hashes for c in chunks),
            b"".join(c.deaths for c in chunks),
            b"".join(c.probes for c in chunks),
            events,
        )

    @classmethod
    def _sorted(
        cls,
        lines: array[int],
        ids: bytes,
        hashes: bytes,
        deaths: bytes,
        probes: bytes,
        events: list[bytes],
    ) -> Rows:
        keys = [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]
        by_id = sorted(range(len(keys)), key=keys.__getitem__)
        return cls(lines, ids, hashes, deaths, probes, events, by_id)

    def __len__(self) -> int:
        return len(self.lines)

    def citizen_ids(self) -> list[bytes]:
        ids = self.ids
        return [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]

    def row_hashes(self, index: int) -> Hashes:
        return unpack_hashes(self.hashes[index * HASH_BYTES : (index + 1) * HASH_BYTES])

    def events_by_id(self) -> list[bytes]:
        return [self.events[i] for i in self.by_id]

    def probes_by_id(self) -> list[bytes]:
        probes = self.probes
        return [probes[i * PROBE_BYTES : (i + 1) * PROBE_BYTES] for i in self.by_id]

    def without(self, lines: Iterable[int]) -> Rows:
        dropped = set(lines)
        if not dropped:
            return self
        kept = [i for i, line in enumerate(self.lines) if line not in dropped]
        return Rows._sorted(
            array("q", (self.lines[i] for i in kept)),
            b"".join(self.ids[i * ID_BYTES : (i + 1) * ID_BYTES] for i in kept),
            b"".join(self.hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES] for i in kept),
            bytes(self.deaths[i] for i in kept),
            b"".join(self.probes[i * PROBE_BYTES : (i + 1) * PROBE_BYTES] for i in kept),
            [self.events[i] for i in kept],
        )


class Classified(NamedTuple):
    """A batch's rows against the index: new citizens, known ones whose row differs, and
    citizens an earlier batch of the run accepted."""

    new: list[int]
    """Lines of citizens the index does not know."""
    changed: list[tuple[int, IndexRow]]
    """Lines of known citizens whose row differs from the index, with their index row."""
    repeated: list[int]
    """Lines of citizens on an earlier line of the file."""


class BulkStore(ABC):
    """An import's access to the event table and the index, in a backend's dialect."""

    index_table = "population_citizen_index"
    position_table = "population_citizen_index_position"

    def __init__(self, mapper: Mapper[UUID], hasher: FieldHasher) -> None:
        self.mapper = mapper
        self.hasher = hasher

    @abstractmethod
    def open(self) -> AbstractContextManager[None]:
        """Hold the store's connection for the import; creates the index tables."""

    @abstractmethod
    def batch(self) -> AbstractContextManager[Batch]:
        """A transaction, committed when the block ends without an error."""

    def catch_up(self) -> int:
        """Fold committed events into the index in short transactions, without the lock.

        Readers of the library's tables may read without the lock: its writers commit in
        notification id order. Returns the number of events folded.
        """
        folded = 0
        while True:
            with self.batch() as batch:
                count, _ = batch.fold_after(REBUILD_PAGE)
            folded += count
            if count == 0:
                return folded

    def rebuild(self) -> int:
        """Derive the index again from every event; returns the number of events folded."""
        with self.batch() as batch:
            batch.clear()
        return self.catch_up()


class Batch(ABC):
    """One transaction of an import: `duplicates`, then `lock`, `classify` and `write`.

    The index maintenance is shared; backends supply a few SQL primitives.
    """

    def __init__(self, store: BulkStore) -> None:
        self.store = store

    @abstractmethod
    def stage(self, rows: Rows) -> None:
        """Hand the batch's rows (each citizen once) to the store, before the lock."""

    @abstractmethod
    def classify(self, rows: Rows) -> Classified:
        """The staged rows against the index and the run's earlier batches, under the lock.

        The citizens of rows that are not repeated are recorded as accepted by the run
        (when the batch commits).
        """

    @abstractmethod
    def lock(self) -> set[UUID]:
        """Take the event table's write lock and fold in other writers' events.

        Returns the citizens whose index rows changed.
        """

    @abstractmethod
    def lookup(self, ids: Sequence[UUID]) -> dict[UUID, IndexRow]: ...

    @abstractmethod
    def write(
        self, new: Rows, changes: Sequence[StoredEvent], changed_rows: Sequence[IndexRow]
    ) -> None:
        """Record the batch's events and index rows, and advance the index position.

        `new` are the new citizens' rows, whose events are written in citizen id order.
        """

    def fold_after(self, limit: int) -> tuple[int, set[UUID]]:
        """Fold up to `limit` notifications after the stored position into the index."""
        position = self.position()
        notifications = self.select_after(position, limit)
        if not notifications:
            return 0, set()
        to_event = self.store.mapper.to_domain_event
        events = [(n.id, to_event(n)) for n in notifications if n.topic in CITIZEN_TOPICS]
        rows: dict[UUID, IndexRow | None] = dict(
            self.lookup(list({e.originator_id for _, e in events}))
        )
        for position, event in events:
            rows[event.originator_id] = fold(
                self.store.hasher, rows.get(event.originator_id), event, position
            )
        self.upsert([row for row in rows.values() if row is not None])
        self.set_position(notifications[-1].id)
        return len(notifications), set(rows)

    def catch_up_all(self) -> set[UUID]:
        touched: set[UUID] = set()
        while True:
            count, ids = self.fold_after(CATCH_UP_PAGE)
            touched |= ids
            if count < CATCH_UP_PAGE:
                return touched

    @abstractmethod
    def position(self) -> int: ...

    @abstractmethod
    def set_position(self, notification_id: int) -> None: ...

    @abstractmethod
    def select_after(self, position: int, limit: int) -> list[Notification]:
        """Notifications with ids above `position`, in order."""

    @abstractmethod
    def upsert(self, rows: Sequence[IndexRow]) -> None: ...

    @abstractmethod
    def clear(self) -> None: ...


def _index_row(values: Sequence[Any]) -> IndexRow:
    citizen_id = values[0] if isinstance(values[0], UUID) else UUID(bytes=values[0])
    a, b, c, d, e, f = values[2:8]
    hashes: Hashes = (a, b, c, d, e, f)
    return IndexRow(citizen_id, values[1], hashes, values[8])


def _postgres_lookup(
    cursor: psycopg.Cursor[TupleRow], table: sql.Identifier, ids: Sequence[UUID]
) -> dict[UUID, IndexRow]:
    if not ids:
        return {}
    cursor.execute(
        sql.SQL("SELECT {} FROM {} WHERE citizen_id = ANY(%s)").format(
            sql.SQL(", ").join(map(sql.Identifier, _INDEX_COLUMNS)), table
        ),
        (list(ids),),
    )
    return {row.citizen_id: row for row in map(_index_row, cursor.fetchall())}


def _sqlite_lookup(cursor: sqlite3.Cursor, table: str, ids: Sequence[UUID]) -> dict[UUID, IndexRow]:
    found: dict[UUID, IndexRow] = {}
    columns = ", ".join(_INDEX_COLUMNS)
    for start in range(0, len(ids), 500):
        chunk = [i.bytes for i in ids[start : start + 500]]
        cursor.execute(
            f"SELECT {columns} FROM {table} WHERE citizen_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        found.update((r.citizen_id, r) for r in map(_index_row, cursor.fetchall()))
    return found


# PostgreSQL


class PostgresBulkStore(BulkStore):
    def __init__(
        self, recorder: PostgresApplicationRecorder, mapper: Mapper[UUID], hasher: FieldHasher
    ) -> None:
        super().__init__(mapper, hasher)
        self.recorder = recorder
        schema = recorder.datastore.schema
        self.events = sql.Identifier(schema, recorder.events_table_name)
        self.index = sql.Identifier(schema, self.index_table)
        self.position_ = sql.Identifier(schema, self.position_table)
        self.channel = sql.Identifier(recorder.channel_name)
        self._conn: psycopg.Connection[Any] | None = None
        self.written: list[tuple[int, int]] = []
        """The notification ids (lower bound excluded) of each run of batches this import
        wrote without another writer in between."""

    @contextmanager
    def open(self) -> Iterator[None]:
        with self.recorder.datastore.get_connection() as conn:
            self._conn = conn
            self.written = []
            try:
                self._create_tables(conn)
                self._create_scratch_tables(conn)
                yield
            finally:
                self._conn = None
                if not conn.closed:
                    conn.rollback()
                    with conn.transaction():
                        conn.execute(f"DROP TABLE IF EXISTS {_PROBE}, {_SEEN}")

    def _create_scratch_tables(self, conn: psycopg.Connection[Any]) -> None:
        """The session's own tables: the batch's rows, and the citizens this run accepted."""
        hashes = ", ".join(f"{c} bigint NOT NULL" for c in _HASH_COLUMNS)
        with contextlib.suppress(psycopg.errors.InvalidParameterValue), conn.transaction():
            conn.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {_PROBE}, {_SEEN}")
            conn.execute(
                f"CREATE TEMP TABLE {_PROBE} (line bigint NOT NULL, citizen_id uuid NOT NULL,"
                f" {hashes}, states_death boolean NOT NULL) ON COMMIT DELETE ROWS"
            )
            conn.execute(
                f"CREATE TEMP TABLE {_SEEN} (citizen_id uuid PRIMARY KEY, line bigint NOT NULL)"
            )

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        hashes = sql.SQL(", ").join(
            sql.SQL("{} bigint NOT NULL").format(sql.Identifier(c)) for c in _HASH_COLUMNS
        )
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (citizen_id uuid PRIMARY KEY,"
                    " version bigint NOT NULL, {}, registered_at bigint)"
                ).format(self.index, hashes)
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS registered_at bigint").format(
                    self.index
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (singleton boolean PRIMARY KEY"
                    " DEFAULT true CHECK (singleton), notification_id bigint NOT NULL)"
                ).format(self.position_)
            )
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES (true, 0) ON CONFLICT DO NOTHING").format(
                    self.position_
                )
            )

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        if self._conn is None:
            raise RuntimeError("open() the store first")
        with self._conn.transaction(), self._conn.cursor(row_factory=tuple_row) as cursor:
            yield _PostgresBatch(self, cursor)


class _PostgresBatch(Batch):
    store: PostgresBulkStore

    def __init__(self, store: PostgresBulkStore, cursor: psycopg.Cursor[TupleRow]) -> None:
        super().__init__(store)
        self.cursor = cursor
        self._staged = 0

    def lock(self) -> set[UUID]:
        self.cursor.execute(
            sql.SQL("SET LOCAL lock_timeout = '{}s'").format(sql.Literal(LOCK_TIMEOUT_S))
        )
        self.cursor.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.store.events))
        return self.catch_up_all()

    def position(self) -> int:
        self.cursor.execute(sql.SQL("SELECT notification_id FROM {}").format(self.store.position_))
        row = self.cursor.fetchone()
        return int(row[0]) if row else 0

    def set_position(self, notification_id: int) -> None:
        self.cursor.execute(
            sql.SQL("UPDATE {} SET notification_id = %s").format(self.store.position_),
            (notification_id,),
        )

    def select_after(self, position: int, limit: int) -> list[Notification]:
        self.cursor.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            ).format(self.store.events),
            (position, limit),
        )
        return [
            Notification(id=n, originator_id=o, originator_version=v, topic=t, state=bytes(s))
            for n, o, v, t, s in self.cursor.fetchall()
        ]

    def lookup(self, ids: Sequence[UUID]) -> dict[UUID, IndexRow]:
        return _postgres_lookup(self.cursor, self.store.index, ids)

    def upsert(self, rows: Sequence[IndexRow]) -> None:
        if not rows:
            return
        columns = sql.SQL(", ").join(map(sql.Identifier, _INDEX_COLUMNS))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in _INDEX_COLUMNS[1:]
        )
        self.cursor.executemany(
            sql.SQL(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (citizen_id) DO UPDATE SET {}"
            ).format(
                self.store.index,
                columns,
                sql.SQL(", ").join(sql.Placeholder() * len(_INDEX_COLUMNS)),
                updates,
            ),
            [(r.citizen_id, r.version, *r.hashes, r.registered_at) for r in rows],
        )

    def clear(self) -> None:
        self.cursor.execute(sql.SQL("TRUNCATE {}").format(self.store.index))
        self.set_position(0)

    def stage(self, rows: Rows) -> None:
        """COPY the rows into the session's batch table; joins with it probe indexes."""
        self.cursor.execute("SET LOCAL enable_hashjoin = off")
        self.cursor.execute("SET LOCAL enable_mergejoin = off")
        self._copy(f"COPY {_PROBE} FROM STDIN (FORMAT BINARY)", rows.probes_by_id())
        self._staged = len(rows)

    def classify(self, rows: Rows) -> Classified:
        death = _HASH_COLUMNS[DEATH]
        differs = " OR ".join(f"i.{c} <> p.{c}" for c in _HASH_COLUMNS[:DEATH])
        columns = ", ".join(f"i.{c}" for c in _INDEX_COLUMNS)
        ours = _multirange(self.store.written)
        self.cursor.execute(
            sql.SQL(
                f"SELECT p.line, i.registered_at <@ %(ours)s::int8multirange, {columns}"
                f" FROM {_PROBE} p LEFT JOIN {{}} i USING (citizen_id)"
                f" WHERE i.citizen_id IS NULL OR {differs}"
                f" OR (p.states_death AND i.{death} <> p.{death})"
                " OR i.registered_at <@ %(ours)s::int8multirange"
            ).format(self.store.index),
            {"ours": ours},
        )
        new: list[int] = []
        changed: dict[int, IndexRow] = {}
        repeated: list[int] = []
        for line, registered_by_run, *stored in self.cursor.fetchall():
            if stored[0] is None:
                new.append(line)
            elif registered_by_run:
                repeated.append(line)
            else:
                changed[line] = _index_row(stored)
        known = len(rows) - len(new) - len(repeated)
        if known == 0:
            return Classified(new, list(changed.items()), repeated)
        if known == len(rows):
            self.cursor.execute(
                f"INSERT INTO {_SEEN} SELECT citizen_id, line FROM {_PROBE} ON CONFLICT DO NOTHING"
            )
        else:
            self.cursor.execute(
                sql.SQL(
                    f"INSERT INTO {_SEEN} SELECT p.citizen_id, p.line FROM {_PROBE} p"
                    " JOIN {} i USING (citizen_id)"
                    " WHERE NOT coalesce(i.registered_at <@ %s::int8multirange, false)"
                    " ON CONFLICT DO NOTHING"
                ).format(self.store.index),
                (ours,),
            )
        if self.cursor.rowcount < known:
            self.cursor.execute(
                f"SELECT p.line FROM {_PROBE} p JOIN {_SEEN} s USING (citizen_id)"
                " WHERE s.line <> p.line"
            )
            for (line,) in self.cursor.fetchall():
                repeated.append(line)
                changed.pop(line, None)
        return Classified(new, list(changed.items()), sorted(repeated))

    def write(
        self, new: Rows, changes: Sequence[StoredEvent], changed_rows: Sequence[IndexRow]
    ) -> None:
        if not new and not changes:
            return
        changed = []
        for e in changes:
            assert isinstance(e.originator_id, UUID)
            changed.append(
                event_tuple(e.originator_id.bytes, e.originator_version, e.topic, e.state)
            )
        before = self.position()
        self._copy(
            sql.SQL(
                "COPY {} (originator_id, originator_version, topic, state)"
                " FROM STDIN (FORMAT BINARY)"
            ).format(self.store.events),
            [*new.events_by_id(), *changed],
        )
        self.cursor.execute(
            sql.SQL(
                "SELECT min(notification_id), max(notification_id) FROM {}"
                " WHERE notification_id > %s"
            ).format(self.store.events),
            (before,),
        )
        bounds = self.cursor.fetchone()
        assert bounds is not None
        first, last = int(bounds[0]), int(bounds[1])
        if new:
            copied = len(new) + sum(new.deaths) + len(changed)
            self._index_new(new, first if last - first + 1 == copied else None)
        self.upsert(changed_rows)
        self.set_position(last)
        _extend(self.store.written, before, last)
        self.cursor.execute(sql.SQL("NOTIFY {}").format(self.store.channel))

    def _index_new(self, new: Rows, first: int | None) -> None:
        """The new citizens' index rows, from the batch table.

        The COPY gave its rows the ids `first`, `first` + 1, ... in its order (new
        citizens in id order, each `Registered` then `Died` if stated) when nobody else
        drew from the sequence, so each `Registered` id follows from the rows before it.
        Otherwise (`first` None) they are looked up in the event table.
        """
        columns = sql.SQL(", ").join(map(sql.Identifier, _INDEX_COLUMNS))
        hashes = ", ".join("p." + c for c in _HASH_COLUMNS)
        # When every staged row is new, none needs looking up in the index again.
        only_new = sql.SQL(
            ""
            if len(new) == self._staged
            else " WHERE NOT EXISTS (SELECT FROM {index} i WHERE i.citizen_id = p.citizen_id)"
        ).format(index=self.store.index)
        if first is None:
            self.cursor.execute(
                sql.SQL(
                    f"INSERT INTO {{index}} ({{columns}}) SELECT p.citizen_id,"
                    f" 1 + p.states_death::int, {hashes}, e.notification_id FROM {_PROBE} p"
                    " JOIN {events} e"
                    " ON e.originator_id = p.citizen_id AND e.originator_version = 1{only_new}"
                ).format(
                    index=self.store.index,
                    columns=columns,
                    events=self.store.events,
                    only_new=only_new,
                )
            )
            return
        self.cursor.execute(
            sql.SQL(
                f"INSERT INTO {{index}} ({{columns}}) SELECT p.citizen_id,"
                f" 1 + p.states_death::int, {hashes}, %s - 1 - p.states_death::int"
                " + sum(1 + p.states_death::int) OVER (ORDER BY p.citizen_id)"
                f" FROM {_PROBE} p{{only_new}}"
            ).format(index=self.store.index, columns=columns, only_new=only_new),
            (first,),
        )

    def _copy(self, statement: sql.Composed | str, rows: Iterable[bytes]) -> None:
        with self.cursor.copy(statement) as copy:
            copy.write(_PGCOPY_HEADER)
            copy.write(b"".join(rows))
            copy.write(_PGCOPY_TRAILER)


def _extend(written: list[tuple[int, int]], after: int, last: int) -> None:
    """Add the notification ids above `after` up to `last` to the run's own."""
    if written and written[-1][1] == after:
        written[-1] = (written[-1][0], last)
    else:
        written.append((after, last))


def _multirange(written: Sequence[tuple[int, int]]) -> str:
    return "{" + ",".join(f"({after},{last}]" for after, last in written) + "}"


# SQLite


class SQLiteBulkStore(BulkStore):
    def __init__(
        self, recorder: SQLiteApplicationRecorder, mapper: Mapper[UUID], hasher: FieldHasher
    ) -> None:
        super().__init__(mapper, hasher)
        self.recorder = recorder
        self.seen: SeenIds | None = None

    @contextmanager
    def open(self) -> Iterator[None]:
        with tempfile.TemporaryDirectory(prefix="vaxreg-import-") as scratch:
            self.seen = SeenIds(Path(scratch))
            try:
                self._create_tables()
                yield
            finally:
                self.seen.close()
                self.seen = None

    def _create_tables(self) -> None:
        hashes = ", ".join(f"{c} INTEGER NOT NULL" for c in _HASH_COLUMNS)
        with self.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.index_table} (citizen_id BLOB PRIMARY KEY,"
                f" version INTEGER NOT NULL, {hashes}, registered_at INTEGER) WITHOUT ROWID"
            )
            cursor.execute(f"SELECT name FROM pragma_table_info('{self.index_table}')")
            if "registered_at" not in {name for (name,) in cursor.fetchall()}:
                cursor.execute(f"ALTER TABLE {self.index_table} ADD COLUMN registered_at INTEGER")
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.position_table}"
                " (singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
                " notification_id INTEGER NOT NULL)"
            )
            cursor.execute(f"INSERT OR IGNORE INTO {self.position_table} VALUES (1, 0)")

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        with self.recorder.datastore.transaction(commit=True) as cursor:
            yield _SQLiteBatch(self, cursor)


class _SQLiteBatch(Batch):
    store: SQLiteBulkStore

    def __init__(self, store: SQLiteBulkStore, cursor: SQLiteCursor) -> None:
        super().__init__(store)
        self.cursor = cursor.sqlite_cursor

    def lock(self) -> set[UUID]:
        """A write as the transaction's first statement takes SQLite's write lock."""
        self.cursor.execute(
            f"UPDATE {self.store.position_table} SET notification_id = notification_id"
        )
        return self.catch_up_all()

    def position(self) -> int:
        self.cursor.execute(f"SELECT notification_id FROM {self.store.position_table}")
        row = self.cursor.fetchone()
        return int(row[0]) if row else 0

    def set_position(self, notification_id: int) -> None:
        self.cursor.execute(
            f"UPDATE {self.store.position_table} SET notification_id = ?", (notification_id,)
        )

    def select_after(self, position: int, limit: int) -> list[Notification]:
        self.cursor.execute(
            "SELECT rowid, originator_id, originator_version, topic, state"
            f" FROM {self.store.recorder.events_table_name}"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (position, limit),
        )
        return [
            Notification(id=n, originator_id=UUID(o), originator_version=v, topic=t, state=s)
            for n, o, v, t, s in self.cursor.fetchall()
        ]

    def lookup(self, ids: Sequence[UUID]) -> dict[UUID, IndexRow]:
        return _sqlite_lookup(self.cursor, self.store.index_table, ids)

    def upsert(self, rows: Sequence[IndexRow]) -> None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in _INDEX_COLUMNS[1:])
        self.cursor.executemany(
            f"INSERT INTO {self.store.index_table} ({', '.join(_INDEX_COLUMNS)})"
            f" VALUES ({','.join('?' * len(_INDEX_COLUMNS))})"
            f" ON CONFLICT (citizen_id) DO UPDATE SET {updates}",
            [(r.citizen_id.bytes, r.version, *r.hashes, r.registered_at) for r in rows],
        )

    def clear(self) -> None:
        self.cursor.execute(f"DELETE FROM {self.store.index_table}")
        self.set_position(0)

    def stage(self, rows: Rows) -> None:
        """Nothing to do: `classify` reads the rows themselves."""

    def classify(self, rows: Rows) -> Classified:
        assert self.store.seen is not None, "open() the store first"
        repeated = self.store.seen.earlier(rows)
        ids = [UUID(bytes=i) for i in rows.citizen_ids()]
        known = self.lookup(ids)
        new: list[int] = []
        changed: list[tuple[int, IndexRow]] = []
        earlier = set(repeated)
        for index, (line, citizen_id) in enumerate(zip(rows.lines, ids, strict=True)):
            if line in earlier:
                continue
            stored = known.get(citizen_id)
            if stored is None:
                new.append(line)
                continue
            hashes = rows.row_hashes(index)
            states_death = rows.deaths[index] == 1
            if stored.hashes[:DEATH] != hashes[:DEATH] or (
                states_death and stored.hashes[DEATH] != hashes[DEATH]
            ):
                changed.append((line, stored))
        return Classified(new, changed, repeated)

    def write(
        self, new: Rows, changes: Sequence[StoredEvent], changed_rows: Sequence[IndexRow]
    ) -> None:
        if not new and not changes:
            return
        rows = [
            (UUID(bytes=citizen_id).hex, version, topic, state)
            for citizen_id, version, topic, state in event_fields(b"".join(new.events_by_id()))
        ]
        for e in changes:
            assert isinstance(e.originator_id, UUID)
            rows.append((e.originator_id.hex, e.originator_version, e.topic, e.state))
        before = self.position()
        table = self.store.recorder.events_table_name
        self.cursor.executemany(self.store.recorder.insert_events_statement, rows)
        self.cursor.execute(
            f"SELECT originator_id, rowid FROM {table} WHERE rowid > ? AND originator_version = 1",
            (before,),
        )
        registered = {UUID(o): n for o, n in self.cursor.fetchall()}
        self.upsert(
            [
                IndexRow(
                    UUID(bytes=i), 1 + new.deaths[n], new.row_hashes(n), registered[UUID(bytes=i)]
                )
                for n, i in enumerate(new.citizen_ids())
            ]
        )
        self.upsert(changed_rows)
        self.cursor.execute(
            f"UPDATE {self.store.position_table} SET notification_id ="
            f" (SELECT max(rowid) FROM {self.store.recorder.events_table_name})"
        )


class SeenIds:
    """The citizen IDs an import run accepted so far, in a scratch SQLite file."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "seen.sqlite3", isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            " CREATE TABLE seen (id BLOB PRIMARY KEY) WITHOUT ROWID;"
        )

    def earlier(self, rows: Rows) -> list[int]:
        """The lines whose id is already recorded; records the others."""
        ids = rows.citizen_ids()
        found: set[bytes] = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            query = f"SELECT id FROM seen WHERE id IN ({','.join('?' * len(part))})"
            found.update(row[0] for row in self._db.execute(query, part))
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO seen VALUES (?)", ((i,) for i in ids if i not in found))
        self._db.execute("COMMIT")
        return [line for line, i in zip(rows.lines, ids, strict=True) if i in found]

    def close(self) -> None:
        self._db.close()
