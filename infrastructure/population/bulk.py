"""Writing an import batch straight into the `population` application's own event table.

Each batch is one transaction that follows the library's write protocol: on PostgreSQL it
takes ``LOCK TABLE <app>_events IN EXCLUSIVE MODE`` (so notification ids are issued in
commit order), COPYs the events in binary and issues the table's NOTIFY; on SQLite it
takes the database's write lock and inserts with the recorder's own statement. The import
index (see `index`) is updated in the same transaction, after folding in the events any
other writer committed since the index's stored position, so it is exact whenever the
lock is held. `rebuild` derives it from the events alone.
"""

from __future__ import annotations

import sqlite3
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper, Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow, tuple_row

from infrastructure.population.index import (
    CITIZEN_TOPICS,
    FieldHasher,
    Hashes,
    IndexRow,
    fold,
)

CATCH_UP_PAGE = 1000
REBUILD_PAGE = 20_000
LOCK_TIMEOUT_S = 30

_HASH_COLUMNS = (
    "name_hash",
    "birth_hash",
    "sex_hash",
    "residence_hash",
    "phone_hash",
    "death_hash",
)
_INDEX_COLUMNS = ("citizen_id", "version", *_HASH_COLUMNS)
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PGCOPY_TRAILER = b"\xff\xff"
_EVENT_ROW_HEAD = struct.Struct(">hi16siqi")
_FIELD_LENGTH = struct.Struct(">i")
_INDEX_ROW = struct.Struct(">hi16s" + "iq" * 7)


@dataclass(frozen=True, slots=True)
class NewCitizen:
    """A citizen the batch registers: its encoded events and its index row."""

    index: IndexRow
    events: tuple[tuple[int, str, bytes], ...]
    """(version, topic, state) of each event, encoded by the application's mapper."""


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

    @abstractmethod
    def source(self) -> IndexSource: ...

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
    """One transaction of an import. `lock` must come before `lookup` and `write`.

    The index maintenance is shared; backends supply a few SQL primitives.
    """

    def __init__(self, store: BulkStore) -> None:
        self.store = store

    @abstractmethod
    def lock(self) -> set[UUID]:
        """Take the event table's write lock and fold in other writers' events.

        Returns the citizens whose index rows changed.
        """

    @abstractmethod
    def lookup(self, ids: Sequence[UUID]) -> dict[UUID, IndexRow]: ...

    @abstractmethod
    def write(
        self,
        new: Sequence[NewCitizen],
        changes: Sequence[StoredEvent],
        changed_rows: Sequence[IndexRow],
    ) -> None:
        """Record the batch's events and index rows, and advance the index position."""

    def fold_after(self, limit: int) -> tuple[int, set[UUID]]:
        """Fold up to `limit` notifications after the stored position into the index."""
        position = self.position()
        notifications = self.select_after(position, limit)
        if not notifications:
            return 0, set()
        events = [
            self.store.mapper.to_domain_event(n) for n in notifications if n.topic in CITIZEN_TOPICS
        ]
        rows: dict[UUID, IndexRow | None] = dict(
            self.lookup(list({e.originator_id for e in events}))
        )
        for event in events:
            rows[event.originator_id] = fold(
                self.store.hasher, rows.get(event.originator_id), event
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
    return IndexRow(citizen_id, values[1], hashes)


@dataclass(frozen=True)
class IndexSource:
    """Where another process reads the index from: a conninfo or an SQLite file."""

    backend: Literal["postgres", "sqlite"]
    location: str
    schema: str = ""


class IndexReader:
    """Read-only lookups in the index from its own connection, without the lock.

    What it finds may be stale by the time a batch takes the lock; `Batch.lookup` decides.
    It is only ever behind, never ahead: a citizen in the index stays in it.
    """

    def __init__(self, source: IndexSource) -> None:
        self.source = source
        self._postgres: psycopg.Connection[TupleRow] | None = None
        self._sqlite: sqlite3.Connection | None = None
        if source.backend == "postgres":
            self._postgres = psycopg.connect(source.location, autocommit=True)
        else:
            self._sqlite = sqlite3.connect(f"file:{source.location}?mode=ro", uri=True)

    def lookup(self, ids: Sequence[UUID]) -> dict[UUID, IndexRow]:
        if self._postgres is not None:
            table = sql.Identifier(self.source.schema, BulkStore.index_table)
            with self._postgres.cursor() as cursor:
                return _postgres_lookup(cursor, table, ids)
        assert self._sqlite is not None
        return _sqlite_lookup(self._sqlite.cursor(), BulkStore.index_table, ids)

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.close()


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

    @contextmanager
    def open(self) -> Iterator[None]:
        with self.recorder.datastore.get_connection() as conn:
            self._conn = conn
            try:
                self._create_tables(conn)
                yield
            finally:
                self._conn = None

    def _create_tables(self, conn: psycopg.Connection[Any]) -> None:
        hashes = sql.SQL(", ").join(
            sql.SQL("{} bigint NOT NULL").format(sql.Identifier(c)) for c in _HASH_COLUMNS
        )
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (citizen_id uuid PRIMARY KEY,"
                    " version bigint NOT NULL, {})"
                ).format(self.index, hashes)
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

    def source(self) -> IndexSource:
        params = self.recorder.datastore.pool.kwargs
        assert isinstance(params, dict)
        conninfo = make_conninfo(
            "", **{k: params[k] for k in ("dbname", "host", "port", "user", "password")}
        )
        return IndexSource("postgres", conninfo, self.recorder.datastore.schema)

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
            [(r.citizen_id, r.version, *r.hashes) for r in rows],
        )

    def clear(self) -> None:
        self.cursor.execute(sql.SQL("TRUNCATE {}").format(self.store.index))
        self.set_position(0)

    def write(
        self,
        new: Sequence[NewCitizen],
        changes: Sequence[StoredEvent],
        changed_rows: Sequence[IndexRow],
    ) -> None:
        if not new and not changes:
            return
        events = [
            _event_row(c.index.citizen_id.bytes, version, topic, state)
            for c in new
            for version, topic, state in c.events
        ]
        for e in changes:
            assert isinstance(e.originator_id, UUID)
            events.append(_event_row(e.originator_id.bytes, e.originator_version, e.topic, e.state))
        self._copy(
            sql.SQL(
                "COPY {} (originator_id, originator_version, topic, state)"
                " FROM STDIN (FORMAT BINARY)"
            ).format(self.store.events),
            events,
        )
        self._copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                self.store.index, sql.SQL(", ").join(map(sql.Identifier, _INDEX_COLUMNS))
            ),
            [_INDEX_ROW.pack(8, *_index_fields(c.index)) for c in new],
        )
        self.upsert(changed_rows)
        self.cursor.execute(
            sql.SQL("UPDATE {} SET notification_id = (SELECT max(notification_id) FROM {})").format(
                self.store.position_, self.store.events
            )
        )
        self.cursor.execute(sql.SQL("NOTIFY {}").format(self.store.channel))

    def _copy(self, statement: sql.Composed, rows: Iterable[bytes]) -> None:
        with self.cursor.copy(statement) as copy:
            copy.write(_PGCOPY_HEADER)
            copy.write(b"".join(rows))
            copy.write(_PGCOPY_TRAILER)


def _event_row(citizen_id: bytes, version: int, topic: str, state: bytes) -> bytes:
    topic_bytes = topic.encode()
    return b"".join(
        (
            _EVENT_ROW_HEAD.pack(4, 16, citizen_id, 8, version, len(topic_bytes)),
            topic_bytes,
            _FIELD_LENGTH.pack(len(state)),
            state,
        )
    )


def _index_fields(row: IndexRow) -> Iterator[int | bytes]:
    yield 16
    yield row.citizen_id.bytes
    for value in (row.version, *row.hashes):
        yield 8
        yield value


# SQLite


class SQLiteBulkStore(BulkStore):
    def __init__(
        self, recorder: SQLiteApplicationRecorder, mapper: Mapper[UUID], hasher: FieldHasher
    ) -> None:
        super().__init__(mapper, hasher)
        self.recorder = recorder

    @contextmanager
    def open(self) -> Iterator[None]:
        hashes = ", ".join(f"{c} INTEGER NOT NULL" for c in _HASH_COLUMNS)
        with self.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.index_table} (citizen_id BLOB PRIMARY KEY,"
                f" version INTEGER NOT NULL, {hashes}) WITHOUT ROWID"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.position_table}"
                " (singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
                " notification_id INTEGER NOT NULL)"
            )
            cursor.execute(f"INSERT OR IGNORE INTO {self.position_table} VALUES (1, 0)")
        yield

    def source(self) -> IndexSource:
        return IndexSource("sqlite", self.recorder.datastore.pool.db_name)

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
            f"INSERT INTO {self.store.index_table} VALUES ({','.join('?' * 8)})"
            f" ON CONFLICT (citizen_id) DO UPDATE SET {updates}",
            [(r.citizen_id.bytes, r.version, *r.hashes) for r in rows],
        )

    def clear(self) -> None:
        self.cursor.execute(f"DELETE FROM {self.store.index_table}")
        self.set_position(0)

    def write(
        self,
        new: Sequence[NewCitizen],
        changes: Sequence[StoredEvent],
        changed_rows: Sequence[IndexRow],
    ) -> None:
        if not new and not changes:
            return
        events = [
            (c.index.citizen_id.hex, version, topic, state)
            for c in new
            for version, topic, state in c.events
        ]
        for e in changes:
            assert isinstance(e.originator_id, UUID)
            events.append((e.originator_id.hex, e.originator_version, e.topic, e.state))
        self.cursor.executemany(self.store.recorder.insert_events_statement, events)
        self.upsert([c.index for c in new])
        self.upsert(changed_rows)
        self.cursor.execute(
            f"UPDATE {self.store.position_table} SET notification_id ="
            f" (SELECT max(rowid) FROM {self.store.recorder.events_table_name})"
        )
