"""Importing a population-register extract into the `population` event store.

The extract is read in chunks of lines. Each chunk is parsed, checked by the `Citizen`
aggregate and encoded by the application's mapper, either in this process or in worker
processes (`workers`); rows of citizens the import index already knows are only hashed,
as their events (if any) can only be decided under the lock. Rows then go in batches of
`batch_size` through `bulk`: one transaction per batch under the event table's write
lock, in which the import index is brought up to date, each row is classified against
it, and the events and index rows are written together.

- A new citizen becomes `Registered` (and `Died` when the row gives a death date).
- A known citizen whose row differs becomes the matching change events, made by the
  aggregate's own commands: `RecordCorrected`, `ResidenceChanged`, `ContactChanged`,
  `Died`. A row that the record refuses (e.g. a new address for someone deceased) is
  rejected with `conflicts_with_record`.
- An unchanged row writes nothing, so importing a file twice, or again after being killed
  half-way, converges on the same store.
- An ID seen earlier in the same run is rejected as `duplicate_id`; the run's IDs are kept
  in a scratch SQLite file, not in memory.

Memory stays bounded: a few chunks in flight and one batch.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from application.ids import IdDeriver
from application.population import PopulationApp
from domain.areas import AreaCode
from domain.base import Actor, Clock, recording_clock, utc_now
from domain.citizen import Citizen
from domain.errors import (
    CitizenDeceased,
    CitizenMoved,
    DomainError,
    InvalidIdNumber,
    InvalidValue,
    UnknownArea,
)
from domain.identity import Sex
from domain.names import normalise_name
from infrastructure.population.bulk import (
    BulkStore,
    IndexReader,
    IndexSource,
    NewCitizen,
    PostgresBulkStore,
    SQLiteBulkStore,
)
from infrastructure.population.index import (
    BIRTH,
    DEATH,
    IDENTITY,
    NAME,
    PHONE,
    RESIDENCE,
    SEX,
    CitizenValues,
    FieldHasher,
    Hashes,
    IndexRow,
    changed_fields,
    fold,
)
from infrastructure.population.rows import (
    MAX_LINE_LENGTH,
    Reason,
    RegisterEntry,
    RegisterFormat,
    RowRejected,
    read_rows,
)

IMPORT_ACTOR: Final = Actor(user_id="population-register-import", role="system")
CORRECTION_REASON: Final = "population register extract"

DEFAULT_BATCH_SIZE: Final = 10_000
DEFAULT_CHUNK_LINES: Final = 2_000

_BOM: Final = b"\xef\xbb\xbf"
_DRAIN: Final = 64 * 1024


class LineSource(Protocol):
    """What the importer reads: a binary file, standard input or a streamed request body."""

    def readline(self, limit: int = -1, /) -> bytes: ...


class Rejected(NamedTuple):
    line: int
    reason: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "reason": self.reason, "message": self.message}


class Parsed(NamedTuple):
    """A valid row, ready to be written as a new citizen or compared with a known one."""

    line: int
    citizen_id: bytes
    hashes: Hashes
    states_death: bool
    events: tuple[tuple[int, str, bytes], ...]
    """The new citizen's events as (version, topic, state); none for a known citizen."""
    values: tuple[str, str, str, str, str, str]
    """The stored form of the row's fields (`CitizenValues.texts`)."""


class Chunk(NamedTuple):
    """Consecutive lines of the extract; `data` holds them with their line breaks."""

    first_line: int
    data: bytes
    rejected: tuple[Rejected, ...]


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    events: int = 0
    seconds: float = 0.0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    longest_lock_seconds: float = 0.0
    """The longest time one batch held the event table's write lock."""
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Seconds per stage. Parsing stages (`parse`, `build_events`, `encode`, `hash`) are
    summed over every process doing them; the others are the importing process's."""

    def add_timings(self, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            self.timings[stage] += seconds

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "longest_lock_seconds": round(self.longest_lock_seconds, 3),
            "rows_per_second": round(self.rows / self.seconds, 1) if self.seconds else None,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "timings": {k: round(v, 3) for k, v in sorted(self.timings.items())},
        }


# Reading


class ExtractReader:
    """Splits an extract into chunks of lines, with the format and (CSV) header found.

    Lines over `MAX_LINE_LENGTH` bytes are rejected here and dropped without being held
    in memory; they stay in the chunk as blank lines so line numbers still count them.
    """

    def __init__(
        self, stream: LineSource, fmt: RegisterFormat | None, chunk_lines: int = DEFAULT_CHUNK_LINES
    ) -> None:
        self.stream = stream
        self.fmt = fmt
        self.header = b""
        self.chunk_lines = chunk_lines
        self.bytes_read = 0
        self.lines_read = 0

    def _line(self) -> tuple[bytes, Rejected | None] | None:
        line = self.stream.readline(MAX_LINE_LENGTH + 1)
        if not line:
            return None
        self.bytes_read += len(line)
        self.lines_read += 1
        if self.lines_read == 1:
            line = line.removeprefix(_BOM)
        if len(line) > MAX_LINE_LENGTH and not line.endswith(b"\n"):
            while (rest := self.stream.readline(_DRAIN)) and not rest.endswith(b"\n"):
                self.bytes_read += len(rest)
            self.bytes_read += len(rest)
            message = f"the line is over {MAX_LINE_LENGTH} bytes"
            return b"\n", Rejected(self.lines_read, Reason.LINE_TOO_LONG.value, message)
        return (line if line.endswith(b"\n") else line + b"\n"), None

    def chunks(self) -> Iterator[Chunk]:
        """The data lines in chunks; a CSV header is kept in `header`, not in a chunk.

        A CSV header that `read_rows` refuses ends the file with its rejection.
        """
        pending: list[bytes] = []
        rejected: list[Rejected] = []
        first = 1
        while (read := self._line()) is not None:
            line, reject = read
            if reject is not None:
                rejected.append(reject)
            elif (self.fmt is None or (self.fmt == "csv" and not self.header)) and line.strip():
                if self.fmt is None:
                    self.fmt = "ndjson" if line.lstrip().startswith(b"{") else "csv"
                if self.fmt == "csv":
                    self.header = line
                    refused = [r for _, r in read_rows(io.BytesIO(line), "csv")]
                    if refused:
                        assert isinstance(refused[0], RowRejected)
                        error = refused[0]
                        rejected.append(
                            Rejected(self.lines_read, error.reason_code.value, error.message)
                        )
                        yield Chunk(self.lines_read + 1, b"", tuple(rejected))
                        return
                    pending, first = [], self.lines_read + 1
                    continue
            pending.append(line)
            if len(pending) >= self.chunk_lines:
                yield Chunk(first, b"".join(pending), tuple(rejected))
                pending, rejected, first = [], [], self.lines_read + 1
        if pending or rejected:
            yield Chunk(first, b"".join(pending), tuple(rejected))


# Parsing and building events


class RowBuilder:
    """Parses a chunk and turns each valid row into a new citizen's encoded events."""

    def __init__(
        self,
        ids: IdDeriver,
        mapper: Mapper[UUID],
        hasher: FieldHasher,
        today: date,
        actor: Actor,
        clock: Clock,
        index: IndexReader | None = None,
    ) -> None:
        self.ids = ids
        self.mapper = mapper
        self.hasher = hasher
        self.today = today
        self.actor = actor
        self.clock = clock
        self.index = index
        self.timings: defaultdict[str, float] = defaultdict(float)

    def parse(self, chunk: Chunk, fmt: RegisterFormat, header: bytes) -> list[Parsed | Rejected]:
        """Every row of the chunk, in line order.

        Rows of citizens the index already knows are only hashed: whether they change
        anything is decided under the lock, and a change is made by the aggregate.
        """
        results: list[Parsed | Rejected] = list(chunk.rejected)
        if not chunk.data:
            return results
        offset = chunk.first_line - 2
        stream = io.BytesIO((header if fmt == "csv" else b"\n") + chunk.data)
        timings = self.timings
        started = time.perf_counter()
        entries: list[tuple[int, UUID, RegisterEntry]] = []
        for line, row in read_rows(stream, fmt, today=self.today):
            if isinstance(row, RowRejected):
                results.append(Rejected(line + offset, row.reason_code.value, row.message))
            else:
                entries.append((line + offset, self.ids.citizen(row.id_number), row))
        parsed = time.perf_counter()
        timings["parse"] += parsed - started
        known = self.index.lookup([e[1] for e in entries]) if self.index else {}
        timings["index_read"] += time.perf_counter() - parsed
        with recording_clock(self.clock):
            for line, citizen_id, entry in entries:
                if citizen_id in known:
                    results.append(self.hashed(line, citizen_id, entry))
                else:
                    results.append(self.build(line, citizen_id, entry))
        results.sort(key=lambda r: r.line)
        return results

    def hashed(self, line: int, citizen_id: UUID, entry: RegisterEntry) -> Parsed:
        """A known citizen's row, without events: its values as the aggregate stores them."""
        started = time.perf_counter()
        values = CitizenValues(
            normalise_name(entry.full_name),
            entry.date_of_birth,
            entry.sex,
            entry.residence,
            entry.phone,
            entry.deceased_on,
        )
        hashes = self.hasher.hashes(citizen_id, values)
        self.timings["hash"] += time.perf_counter() - started
        return Parsed(
            line, citizen_id.bytes, hashes, entry.deceased_on is not None, (), values.texts()
        )

    def take_timings(self) -> dict[str, float]:
        taken, self.timings = self.timings, defaultdict(float)
        return dict(taken)

    def build(self, line: int, citizen_id: UUID, entry: RegisterEntry) -> Parsed | Rejected:
        """A new citizen's row, with its events made by the aggregate and encoded."""
        started = time.perf_counter()
        try:
            citizen = Citizen.register(
                citizen_id,
                entry.id_number,
                entry.full_name,
                entry.date_of_birth,
                entry.sex,
                entry.residence,
                entry.phone,
                today=self.today,
                actor=self.actor,
            )
        except DomainError as error:
            return Rejected(line, _registration_reason(error).value, error.message)
        if entry.deceased_on is not None:
            try:
                citizen.record_death(entry.deceased_on, self.actor, self.today)
            except DomainError as error:
                return Rejected(line, Reason.BAD_DATE.value, error.message)
        built = time.perf_counter()
        encode = self.mapper.to_stored_event
        events = tuple(
            (stored.originator_version, stored.topic, stored.state)
            for stored in map(encode, citizen.collect_events())
        )
        encoded = time.perf_counter()
        values = CitizenValues(
            citizen.full_name,
            citizen.date_of_birth,
            citizen.sex,
            citizen.residence,
            citizen.phone,
            citizen.died_on,
        )
        hashes = self.hasher.hashes(citizen_id, values)
        timings = self.timings
        timings["build_events"] += built - started
        timings["encode"] += encoded - built
        timings["hash"] += time.perf_counter() - encoded
        return Parsed(
            line, citizen_id.bytes, hashes, entry.deceased_on is not None, events, values.texts()
        )


def _registration_reason(error: DomainError) -> Reason:
    if isinstance(error, InvalidIdNumber):
        return Reason.ID_CONTRADICTS_BIRTH
    if isinstance(error, UnknownArea):
        return Reason.BAD_RESIDENCE
    if isinstance(error, InvalidValue):
        field_name = error.details.get("field")
        if field_name == "full_name":
            return Reason.BAD_NAME
        if field_name == "date_of_birth":
            return Reason.BAD_DATE
    return Reason.BAD_PHONE


def _values(texts: Sequence[str]) -> CitizenValues:
    name, birth, sex, residence, phone, died = texts
    return CitizenValues(
        name,
        date.fromisoformat(birth),
        Sex(sex),
        AreaCode.parse(residence),
        phone or None,
        date.fromisoformat(died) if died else None,
    )


@dataclass(frozen=True)
class _WorkerConfig:
    env: Mapping[str, str]
    id_key: bytes
    today: date
    actor: Actor
    fmt: RegisterFormat
    header: bytes
    index: IndexSource


_worker: tuple[RowBuilder, _WorkerConfig] | None = None


def _start_worker(config: _WorkerConfig) -> None:
    global _worker
    ids = IdDeriver(config.id_key)
    app = PopulationApp(config.env, utc_now, ids)
    hasher = FieldHasher(config.id_key)
    index = IndexReader(config.index)
    builder = RowBuilder(ids, app.mapper, hasher, config.today, config.actor, utc_now, index)
    _worker = (builder, config)


def _parse_in_worker(chunk: Chunk) -> tuple[list[Parsed | Rejected], dict[str, float]]:
    assert _worker is not None, "the worker was not initialised"
    builder, config = _worker
    return builder.parse(chunk, config.fmt, config.header), builder.take_timings()


# The run's IDs


class SeenIds:
    """The citizen IDs accepted so far in this run, in a scratch SQLite file."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "seen.sqlite3", isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            " CREATE TABLE seen (id BLOB PRIMARY KEY) WITHOUT ROWID;"
        )

    def first_time(self, ids: Sequence[bytes]) -> list[bool]:
        """For each id, whether it is seen for the first time (in order), and record them."""
        earlier: set[bytes] = set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT id FROM seen WHERE id IN ({','.join('?' * len(part))})", part
            )
            earlier.update(row[0] for row in rows)
        fresh: list[bool] = []
        batch: set[bytes] = set()
        for citizen_id in ids:
            first = citizen_id not in earlier and citizen_id not in batch
            batch.add(citizen_id)
            fresh.append(first)
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO seen VALUES (?)", ((i,) for i in batch - earlier)
        )
        self._db.execute("COMMIT")
        return fresh

    def close(self) -> None:
        self._db.close()


# The import


Reporter = Callable[[ImportSummary, ExtractReader], None]


class PopulationImport:
    """One import run into `app`'s event store (PostgreSQL or SQLite); `run` it once."""

    def __init__(
        self,
        app: PopulationApp,
        id_key: bytes,
        *,
        actor: Actor = IMPORT_ACTOR,
        batch_size: int = DEFAULT_BATCH_SIZE,
        chunk_lines: int = DEFAULT_CHUNK_LINES,
        workers: int = 0,
        on_reject: Callable[[Rejected], None] | None = None,
        on_batch: Reporter | None = None,
    ) -> None:
        if batch_size < 1 or chunk_lines < 1 or workers < 0:
            raise ValueError("batch_size and chunk_lines must be positive, workers >= 0")
        self.app = app
        self.id_key = id_key
        self.actor = actor
        self.batch_size = batch_size
        self.chunk_lines = min(chunk_lines, batch_size)
        self.workers = workers
        self.on_reject = on_reject or (lambda rejected: None)
        self.on_batch = on_batch or (lambda summary, reader: None)
        self.hasher = FieldHasher(id_key)
        self.today = app.today()
        self.store = _bulk_store(app, self.hasher)
        self.summary = ImportSummary()

    def run(self, stream: LineSource, fmt: RegisterFormat | None = None) -> ImportSummary:
        started = time.perf_counter()
        reader = ExtractReader(stream, fmt, self.chunk_lines)
        with (
            self.store.open(),
            tempfile.TemporaryDirectory(prefix="vaxreg-import-") as scratch,
        ):
            self.store.catch_up()
            seen = SeenIds(Path(scratch))
            try:
                batch: list[Parsed | Rejected] = []
                rows_in = self._parsed(reader)
                while True:
                    waited = time.perf_counter()
                    rows = next(rows_in, None)
                    self.summary.timings["wait_for_rows"] += time.perf_counter() - waited
                    if rows is None:
                        break
                    batch.extend(rows)
                    if len(batch) >= self.batch_size:
                        self._import(batch, seen)
                        self.summary.seconds = time.perf_counter() - started
                        self.on_batch(self.summary, reader)
                        batch = []
                self._import(batch, seen)
            finally:
                seen.close()
        self.summary.seconds = time.perf_counter() - started
        self.on_batch(self.summary, reader)
        return self.summary

    def _parsed(self, reader: ExtractReader) -> Iterator[list[Parsed | Rejected]]:
        chunks = reader.chunks()
        first = next(chunks, None)
        if first is None:
            return
        if reader.fmt is None:
            reader.fmt = "ndjson"
        source = self.store.source()
        index = IndexReader(source)
        try:
            local = RowBuilder(
                self.app.ids,
                self.app.mapper,
                self.hasher,
                self.today,
                self.actor,
                self.app.clock,
                index,
            )
            yield local.parse(first, reader.fmt, reader.header)
            self.summary.add_timings(local.take_timings())
            if self.workers == 0:
                for chunk in chunks:
                    yield local.parse(chunk, reader.fmt, reader.header)
                    self.summary.add_timings(local.take_timings())
                return
        finally:
            index.close()
        config = _WorkerConfig(
            _worker_env(self.app),
            self.id_key,
            self.today,
            self.actor,
            reader.fmt,
            reader.header,
            source,
        )
        with _pool(self.workers, config) as pool:
            for rows, timings in _windowed(pool, chunks, window=2 * self.workers + 2):
                self.summary.add_timings(timings)
                yield rows

    def _import(self, rows: list[Parsed | Rejected], seen: SeenIds) -> None:
        summary = self.summary
        rejected = [r for r in rows if isinstance(r, Rejected)]
        valid = [r for r in rows if isinstance(r, Parsed)]
        summary.rows += len(rows)
        timings = summary.timings
        started = time.perf_counter()
        first_time = seen.first_time([r.citizen_id for r in valid])
        timings["seen_ids"] += time.perf_counter() - started
        accepted: list[Parsed] = []
        for row, first in zip(valid, first_time, strict=True):
            if first:
                accepted.append(row)
            else:
                message = "this ID number is on an earlier line of the file"
                rejected.append(Rejected(row.line, Reason.DUPLICATE_ID.value, message))
        new: list[NewCitizen] = []
        changes: list[StoredEvent] = []
        changed_rows: list[IndexRow] = []
        unchanged = 0
        with self.store.batch() as batch:
            started = time.perf_counter()
            batch.lock()
            locked = time.perf_counter()
            ids = [UUID(bytes=r.citizen_id) for r in accepted]
            known = batch.lookup(ids)
            looked_up = time.perf_counter()
            for citizen_id, row in zip(ids, accepted, strict=True):
                stored = known.get(citizen_id)
                if stored is None and not row.events:
                    raise RuntimeError(f"the index lost citizen {citizen_id} during the import")
                if stored is None:
                    index = IndexRow(citizen_id, len(row.events), row.hashes)
                    new.append(NewCitizen(index, row.events))
                    continue
                fields = changed_fields(stored.hashes, row.hashes, row.states_death)
                outcome = self._change(stored, row, fields) if fields else None
                if outcome is None:
                    unchanged += 1
                elif isinstance(outcome, Rejected):
                    rejected.append(outcome)
                else:
                    changes.extend(outcome[0])
                    changed_rows.append(outcome[1])
            classified = time.perf_counter()
            batch.write(new, changes, changed_rows)
            written = time.perf_counter()
        timings["lock_and_catch_up"] += locked - started
        timings["index_lookup"] += looked_up - locked
        timings["classify_and_change"] += classified - looked_up
        timings["copy_events_and_index"] += written - classified
        committed = time.perf_counter()
        timings["commit"] += committed - written
        summary.longest_lock_seconds = max(summary.longest_lock_seconds, committed - started)
        summary.created += len(new)
        summary.updated += len(changed_rows)
        summary.unchanged += unchanged
        summary.events += sum(len(c.events) for c in new) + len(changes)
        summary.rejected += len(rejected)
        rejected.sort(key=lambda r: r.line)
        for reject in rejected:
            summary.rejected_by_reason[reject.reason] += 1
            self.on_reject(reject)

    def _change(
        self, stored: IndexRow, row: Parsed, fields: set[int]
    ) -> tuple[list[StoredEvent], IndexRow] | Rejected | None:
        """The events that bring a known citizen in line with the row, made by its commands."""
        citizen = self.app.find(stored.citizen_id, Citizen)
        assert citizen is not None, "the index names a citizen the store does not have"
        values = _values(row.values)
        try:
            with recording_clock(self.app.clock):
                if fields & set(IDENTITY):
                    citizen.correct_record(
                        CORRECTION_REASON,
                        self.actor,
                        self.today,
                        full_name=values.full_name if NAME in fields else None,
                        date_of_birth=values.date_of_birth if BIRTH in fields else None,
                        sex=values.sex if SEX in fields else None,
                    )
                if RESIDENCE in fields:
                    citizen.change_residence(values.residence, self.actor)
                if PHONE in fields:
                    citizen.change_contact(values.phone, self.actor)
                if DEATH in fields and values.died_on is not None:
                    try:
                        citizen.record_death(values.died_on, self.actor, self.today)
                    except InvalidValue as error:
                        return Rejected(row.line, Reason.BAD_DATE.value, error.message)
        except (CitizenDeceased, CitizenMoved) as error:
            return Rejected(row.line, Reason.CONFLICTS_WITH_RECORD.value, error.message)
        except DomainError as error:
            return Rejected(row.line, _registration_reason(error).value, error.message)
        events = citizen.collect_events()
        if not events:
            return None
        index: IndexRow | None = stored
        for event in events:
            index = fold(self.hasher, index, event)
        assert index is not None
        return [self.app.mapper.to_stored_event(e) for e in events], index


def rebuild_index(app: PopulationApp, id_key: bytes) -> int:
    """Derive the import index again from the events; returns the number of events read."""
    store = _bulk_store(app, FieldHasher(id_key))
    with store.open():
        return store.rebuild()


def _bulk_store(app: PopulationApp, hasher: FieldHasher) -> BulkStore:
    recorder = app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresBulkStore(recorder, app.mapper, hasher)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteBulkStore(recorder, app.mapper, hasher)
    raise TypeError(f"importing needs PostgreSQL or SQLite, not {type(recorder).__name__}")


def _worker_env(app: PopulationApp) -> dict[str, str]:
    """The application's settings with in-memory persistence: the mapper, no connections."""
    env = dict(app.env)
    for key in ("PERSISTENCE_MODULE", f"{app.name.upper()}_PERSISTENCE_MODULE"):
        env[key] = "eventsourcing.popo"
    return env


@contextmanager
def _pool(workers: int, config: _WorkerConfig) -> Iterator[Pool]:
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_start_worker, initargs=(config,))
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _windowed(
    pool: Pool, chunks: Iterable[Chunk], window: int
) -> Iterator[tuple[list[Parsed | Rejected], dict[str, float]]]:
    """Results in chunk order, with at most `window` chunks read ahead (bounded memory)."""
    pending: deque[AsyncResult[tuple[list[Parsed | Rejected], dict[str, float]]]] = deque()
    for chunk in chunks:
        pending.append(pool.apply_async(_parse_in_worker, (chunk,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def open_extract(path: str) -> AbstractContextManager[BinaryIO]:
    """The extract at `path`, or standard input for ``-``."""
    if path == "-":
        return _stdin()
    return open(path, "rb")


@contextmanager
def _stdin() -> Iterator[BinaryIO]:
    yield os.fdopen(os.dup(0), "rb")
