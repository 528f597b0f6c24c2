"""`OneTripRecorder` on a real PostgreSQL database: one statement a save, with the
library's guarantees (table lock, notification, all or nothing, a table per context)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent

from infrastructure.recorders import OneTripRecorder
from tests.support.registry import registry_settings


class Tally(Aggregate):
    def __init__(self, count: int) -> None:
        self.count = count


class Census(Application[uuid.UUID]):
    name = "census"


class Clinic(Application[uuid.UUID]):
    name = "clinic"


@pytest.fixture
def apps(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Census, Clinic]]:
    settings = registry_settings(tmp_path, postgres_url)
    census = Census(env=settings.application_env("census", create_tables=True))
    clinic = Clinic(env=settings.application_env("clinic", create_tables=True))
    yield census, clinic
    census.close()
    clinic.close()


def _count(postgres_url: str, table: str) -> int:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _stored(originator_id: uuid.UUID, version: int) -> StoredEvent:
    return StoredEvent(originator_id, version, "tests:Tally.Created", b"{}")


def test_the_settings_give_every_context_this_recorder(apps: tuple[Census, Clinic]) -> None:
    assert all(isinstance(app.recorder, OneTripRecorder) for app in apps)


def test_each_context_saves_into_its_own_table(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    census, clinic = apps
    census.save(Tally(1), Tally(2))
    recordings = clinic.save(Tally(3))

    assert _count(postgres_url, "census_events") == 2
    assert _count(postgres_url, "clinic_events") == 1
    assert [r.notification.id for r in recordings] == [1]
    assert clinic.repository.get(recordings[0].domain_event.originator_id).count == 3


def test_a_save_with_one_duplicate_version_records_none_of_its_events(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    census, _ = apps
    taken = uuid.uuid4()
    census.recorder.insert_events([_stored(taken, 1)])

    with pytest.raises(IntegrityError):
        census.recorder.insert_events([_stored(uuid.uuid4(), 1), _stored(taken, 1)])

    assert _count(postgres_url, "census_events") == 1
    assert census.recorder.max_notification_id() == 1


def test_a_save_waits_for_the_table_lock_so_commits_keep_the_order_of_ids(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    census, _ = apps
    saved = threading.Event()

    def save() -> None:
        census.save(Tally(1))
        saved.set()

    with psycopg.connect(postgres_url) as holder:
        holder.execute("LOCK TABLE census_events IN EXCLUSIVE MODE")
        saver = threading.Thread(target=save)
        saver.start()
        time.sleep(0.5)
        assert not saved.is_set()
    saver.join(timeout=5)
    assert saved.is_set()
    assert _count(postgres_url, "census_events") == 1


def test_a_save_notifies_the_listeners_of_its_table(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    census, clinic = apps
    with psycopg.connect(postgres_url, autocommit=True) as listener:
        listener.execute("LISTEN census_events")
        clinic.save(Tally(1))
        census.save(Tally(2))
        channels = [n.channel for n in listener.notifies(timeout=2, stop_after=1)]

    assert channels == ["census_events"]


def test_migrating_creates_a_function_per_table_and_not_the_librarys_shared_one(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        names = {row[0] for row in conn.execute("SELECT proname FROM pg_proc")}
    assert {"census_events_insert", "clinic_events_insert"} <= names
    assert not any(name.startswith("es_insert_events") for name in names)


def test_versions_and_states_of_any_size_are_saved_as_given(apps: tuple[Census, Clinic]) -> None:
    census, _ = apps
    originator = uuid.uuid4()
    events = [
        StoredEvent(originator, version, "tests:Tally.Counted", bytes([version % 256]) * size)
        for version, size in ((1, 0), (70_000, 3), (3_000_000_000, 100_000))
    ]
    census.recorder.insert_events(events)

    assert census.recorder.select_events(originator) == events
    assert census.recorder.select_events(originator, gt=1, limit=1) == events[1:2]
    assert census.recorder.select_events(originator, lte=70_000, desc=True) == events[1::-1]


def test_migrating_drops_the_function_that_took_an_array_of_composite_events(
    apps: tuple[Census, Clinic], postgres_url: str
) -> None:
    census, _ = apps
    recorder = census.recorder
    assert isinstance(recorder, OneTripRecorder)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION census_events_insert(events {recorder.stored_event_type_name}[]) "
            "RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 1::bigint'"
        )
        recorder.create_table()
        signatures = [
            row[0]
            for row in conn.execute(
                "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
                "WHERE proname = 'census_events_insert'"
            )
        ]

    assert signatures == ["ids uuid[], versions bigint[], topics text[], states bytea[]"]
    census.save(Tally(1))
    assert recorder.max_notification_id() == 1
