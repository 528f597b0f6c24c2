"""The recorder vaxreg's contexts save their events with on PostgreSQL: one round trip a save.

The library's application recorder saves in a pipelined transaction of five statements
(lock timeout, ``LOCK TABLE ... IN EXCLUSIVE MODE``, ``NOTIFY``, the insert, commit), which
costs its client about 450-600 µs of CPU a save here. `OneTripRecorder` makes the same
statements one function of the store's, called in one autocommitted statement: about
100 µs for three events. The table lock is kept, so transactions still commit in the
order of their notification ids, and a reader that follows the log never passes a gap
filled later. The statements a save and a command's load run are rendered once.

The library has such a function too (``POSTGRES_ENABLE_DB_FUNCTIONS``), but it takes no
table lock and is named by the id type alone, so the contexts sharing a schema would
replace each other's. This one, named by its table, takes that function's place among the
statements ``vaxreg migrate`` runs. It takes the events as four arrays, one per column,
sent in binary: an array of the library's composite type goes as text, escaped field by
field in Python, which cost such a save 220 µs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from projections.engine import Share


class OneTripRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        function = Identifier(f"{events_table_name}_insert")
        self._call_insert = (
            SQL("SELECT * FROM {schema}.{function}(%b, %b, %b, %b) AS inserted(notification_id)")
            .format(schema=schema, function=function)
            .as_bytes(None)
        )
        index = self.create_insert_function_statement_index
        self.sql_create_statements[index : index + 1] = [
            SQL("DROP FUNCTION IF EXISTS {schema}.{function}({schema}.{event}[])").format(
                schema=schema, function=function, event=Identifier(self.stored_event_type_name)
            ),
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids {id_type}[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "BEGIN "
                "SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "RETURN QUERY INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) "
                "RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                schema=schema,
                function=function,
                id_type=Identifier(datastore.originator_id_type),
                lock_timeout=datastore.lock_timeout,
                table=Identifier(events_table_name),
                channel=Identifier(self.channel_name),
            ),
        ]

        self._select_history = (
            SQL(
                "SELECT originator_version, topic, state FROM {schema}.{table} "
                "WHERE originator_id = %s ORDER BY originator_version"
            )
            .format(schema=schema, table=Identifier(events_table_name))
            .as_bytes(None)
        )
        self._select_share = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id > %s AND notification_id <= %s "
            "AND (get_byte(uuid_send(originator_id), 15) < %s) = %s ORDER BY notification_id"
        ).format(schema=schema, table=Identifier(events_table_name))

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The library's; a whole history, which is how every command loads an aggregate,
        is read with a statement rendered once (the library composes one on every call)."""
        events: Sequence[StoredEvent]
        if gt is None and lte is None and not desc and limit is None:
            events = self._select_history_of(originator_id)
        else:
            events = super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        return events

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _select_history_of(self, originator_id: UUID | str) -> list[StoredEvent]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(self._select_history, (originator_id,), prepare=True)
            return [
                StoredEvent(originator_id, version, topic, bytes(state))
                for version, topic, state in cursor.fetchall()
            ]

    def select_share(
        self, after: int, stop: int, share: Share, *, own_connection: bool = False
    ) -> list[Notification]:
        """The notifications after `after` up to `stop` of the aggregates in `share`
        (see :class:`projections.engine.ShareReader`); with `own_connection`, read
        through a new connection (not the pool's), as a forked child must."""
        params = (after, stop, share.cut, share.below)
        if own_connection:
            with self._new_connection() as conn, _share_cursor(conn) as cursor:
                return _notifications(cursor.execute(self._select_share, params).fetchall())
        with self.datastore.get_connection() as conn, _share_cursor(conn) as cursor:
            cursor.execute(self._select_share, params, prepare=True)
            return _notifications(cursor.fetchall())

    def _new_connection(self) -> psycopg.Connection[DictRow]:
        """A connection made as the pool makes its own, but not the pool's."""
        pool = self.datastore.pool
        conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
        kwargs = dict(pool.kwargs() if callable(pool.kwargs) else pool.kwargs or {})
        if pool.get_password_func is not None:
            kwargs["password"] = pool.get_password_func()
        return psycopg.Connection[DictRow].connect(conninfo, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        columns = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(self._call_insert, columns, prepare=True)
            return [row["notification_id"] for row in cursor.fetchall()]


def _share_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[tuple[Any, ...]]:
    """A cursor of tuples read in binary: states come as they are, not in hex."""
    return conn.cursor(row_factory=tuple_row, binary=True)


def _notifications(rows: Sequence[tuple[Any, ...]]) -> list[Notification]:
    return [
        Notification(originator_id, version, topic, state, notification_id)
        for notification_id, originator_id, version, topic, state in rows
    ]
