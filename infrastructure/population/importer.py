"""Importing a population-register extract into the `population` event store.

The extract is read in chunks of lines. Each chunk is parsed, checked and encoded as if
every row were a new citizen (`encoding`), either in this process or in worker
processes (`workers`). Rows then go in batches of `batch_size` through `bulk`: one
transaction per batch, in which the batch's citizens are checked against those the run
already accepted, then, under the event table's write lock, the import index is brought
up to date, each row is classified against it, and the events and index rows are
written together.

- A new citizen becomes `Registered` (and `Died` when the row gives a death date).
- A known citizen whose row differs becomes the matching change events, made by the
  aggregate's own commands: `RecordCorrected`, `ResidenceChanged`, `ContactChanged`,
  `Died`. A row that the record refuses (e.g. a new address for someone deceased) is
  rejected with `conflicts_with_record`.
- An unchanged row writes nothing, so importing a file twice, or again after being killed
  half-way, converges on the same store.
- An ID seen earlier in the same run is rejected as `duplicate_id`; the run's IDs are kept
  by the store (a temporary table, or a scratch SQLite file), not in memory.

Memory stays bounded: a few chunks in flight and one batch.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult, Pool
from typing import BinaryIO, Final, Protocol

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from application.population import PopulationApp
from domain.base import Actor, recording_clock
from domain.citizen import Citizen
from domain.errors import CitizenDeceased, CitizenMoved, DomainError, InvalidValue
from infrastructure.population import encoding
from infrastructure.population.bulk import BulkStore, PostgresBulkStore, Rows, SQLiteBulkStore
from infrastructure.population.encoding import (
    Chunk,
    ChunkEncoder,
    EncodedChunk,
    Rejected,
    WorkerConfig,
    encode_in_worker,
    registration_reason,
    start_worker,
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
    """Seconds per stage. Encoding stages (`parse`, `encode`, `hash`, `reference_path`)
    are summed over every process doing them; the others are the importing process's."""

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
        return self._checked(line) if line else None

    def _checked(self, line: bytes) -> tuple[bytes, Rejected | None]:
        """A line just read, counted, with its line break; a line too long is drained."""
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

    def _settled(self) -> bool:
        """Whether the format (and a CSV file's header) is known: every further line is
        a data line."""
        return self.lines_read > 0 and (self.fmt == "ndjson" or bool(self.header))

    def chunks(self) -> Iterator[Chunk]:
        """The data lines in chunks; a CSV header is kept in `header`, not in a chunk.

        A CSV header that `read_rows` refuses ends the file with its rejection.
        """
        pending: list[bytes] = []
        rejected: list[Rejected] = []
        first = 1
        while not self._settled() and (read := self._line()) is not None:
            line, reject = read
            if reject is not None:
                rejected.append(reject)
            elif line.strip():
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
        readline = self.stream.readline
        limit = MAX_LINE_LENGTH + 1
        while True:
            # Lines that end with a line break are whole and short enough: taken as read.
            plain = len(pending)
            while len(pending) < self.chunk_lines:
                line = readline(limit)
                if not line.endswith(b"\n"):
                    break
                pending.append(line)
            else:
                line = b""
            self.lines_read += len(pending) - plain
            self.bytes_read += sum(map(len, pending[plain:]))
            if line:
                line, reject = self._checked(line)
                pending.append(line)
                if reject is not None:
                    rejected.append(reject)
            elif len(pending) < self.chunk_lines:
                break
            if len(pending) >= self.chunk_lines:
                yield Chunk(first, b"".join(pending), tuple(rejected))
                pending, rejected, first = [], [], self.lines_read + 1
        if pending or rejected:
            yield Chunk(first, b"".join(pending), tuple(rejected))


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
        self._fmt: RegisterFormat = "ndjson"
        self._header = b""

    def run(self, stream: LineSource, fmt: RegisterFormat | None = None) -> ImportSummary:
        started = time.perf_counter()
        reader = ExtractReader(stream, fmt, self.chunk_lines)
        with self._encoded(reader) as encoded_chunks, self.store.open():
            self.store.catch_up()
            batch: list[tuple[Chunk, EncodedChunk]] = []
            rows = 0
            while True:
                waited = time.perf_counter()
                encoded = next(encoded_chunks, None)
                self.summary.timings["wait_for_rows"] += time.perf_counter() - waited
                if encoded is None:
                    break
                self.summary.add_timings(encoded[1].timings)
                batch.append(encoded)
                rows += len(encoded[1].lines) + len(encoded[1].rejected)
                if rows >= self.batch_size:
                    self._import(batch)
                    self.summary.seconds = time.perf_counter() - started
                    self.on_batch(self.summary, reader)
                    batch, rows = [], 0
            self._import(batch)
        self.summary.seconds = time.perf_counter() - started
        self.on_batch(self.summary, reader)
        return self.summary

    @contextmanager
    def _encoded(self, reader: ExtractReader) -> Iterator[Iterator[tuple[Chunk, EncodedChunk]]]:
        """Each chunk with its encoding, in order; in worker processes when there are any.

        While the workers start, this process encodes the first batch's chunks itself,
        and the workers get the chunks after them; an extract that fits in one batch
        starts no workers. They are waited for when the block ends.
        """
        chunks = reader.chunks()
        first = next(chunks, None)
        self._fmt = reader.fmt or "ndjson"
        self._header = reader.header
        if first is None:
            yield iter(())
            return
        all_chunks = itertools.chain([first], chunks)
        if self.workers == 0:
            yield self._encoded_here(all_chunks)
            return
        per_batch = -(-self.batch_size // self.chunk_lines)
        # A batch's worth ahead beyond the workers' own: they keep encoding while a batch
        # is written.
        window = per_batch + 2 * self.workers + 2
        here = list(itertools.islice(all_chunks, per_batch))
        ahead = list(itertools.islice(all_chunks, window))
        if not ahead:
            yield self._encoded_here(here)
            return
        config = WorkerConfig(
            _worker_env(self.app), self.id_key, self.today, self.actor, self._fmt, self._header
        )
        with _pool(self.workers, config) as pool:
            pending = deque((c, pool.apply_async(encode_in_worker, (c,))) for c in ahead)
            yield itertools.chain(
                self._encoded_here(here), _windowed(pool, all_chunks, window, pending)
            )

    def _encoded_here(self, chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, EncodedChunk]]:
        encoder = ChunkEncoder(
            self.app.mapper,
            self.app.ids,
            self.hasher,
            self.today,
            self.actor,
            self.app.clock,
            self._fmt,
            self._header,
        )
        return ((chunk, encoder.encode(chunk)) for chunk in chunks)

    def _import(self, batch: list[tuple[Chunk, EncodedChunk]]) -> None:
        summary = self.summary
        timings = summary.timings
        started = time.perf_counter()
        encoded = [e for _, e in batch]
        rejected = [r for e in encoded for r in e.rejected]
        rows = Rows.of(encoded)
        summary.rows += len(rows) + len(rejected)
        repeated = _repeated_lines(rows)
        rows = rows.without(repeated)
        changes: list[StoredEvent] = []
        changed_rows: list[IndexRow] = []
        with self.store.batch() as store:
            checked = time.perf_counter()
            store.stage(rows)
            locking = time.perf_counter()
            store.lock()
            locked = time.perf_counter()
            classified = store.classify(rows)
            repeated.extend(classified.repeated)
            looked_up = time.perf_counter()
            settled = len(classified.repeated)
            for line, stored in classified.changed:
                outcome = self._change(stored, batch, line)
                if outcome is None:
                    continue
                settled += 1
                if isinstance(outcome, Rejected):
                    rejected.append(outcome)
                else:
                    changes.extend(outcome[0])
                    changed_rows.append(outcome[1])
            classified_at = time.perf_counter()
            new = set(classified.new)
            store.write(_selected(rows, new), changes, changed_rows)
            written = time.perf_counter()
        message = "this ID number is on an earlier line of the file"
        rejected.extend(Rejected(line, Reason.DUPLICATE_ID.value, message) for line in repeated)
        timings["batch_rows"] += checked - started
        timings["stage"] += locking - checked
        timings["lock_and_catch_up"] += locked - locking
        timings["classify_and_duplicates"] += looked_up - locked
        timings["change"] += classified_at - looked_up
        timings["copy_events_and_index"] += written - classified_at
        committed = time.perf_counter()
        timings["commit"] += committed - written
        summary.longest_lock_seconds = max(summary.longest_lock_seconds, committed - locking)
        summary.created += len(new)
        summary.updated += len(changed_rows)
        summary.unchanged += len(rows) - len(new) - settled
        summary.events += len(changes) + sum(1 + rows.deaths[i] for i in _positions(rows, new))
        summary.rejected += len(rejected)
        rejected.sort(key=lambda r: r.line)
        for reject in rejected:
            summary.rejected_by_reason[reject.reason] += 1
            self.on_reject(reject)

    def _change(
        self, stored: IndexRow, batch: Sequence[tuple[Chunk, EncodedChunk]], line: int
    ) -> tuple[list[StoredEvent], IndexRow] | Rejected | None:
        """The events that bring a known citizen in line with its row, made by its commands."""
        entry = self._entry(batch, line)
        values = CitizenValues(
            entry.full_name,
            entry.date_of_birth,
            entry.sex,
            entry.residence,
            entry.phone,
            entry.deceased_on,
        )
        fields = changed_fields(
            stored.hashes,
            self.hasher.hashes(stored.citizen_id, values),
            entry.deceased_on is not None,
        )
        citizen = self.app.find(stored.citizen_id, Citizen)
        assert citizen is not None, "the index names a citizen the store does not have"
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
                        return Rejected(line, Reason.BAD_DATE.value, error.message)
        except (CitizenDeceased, CitizenMoved) as error:
            return Rejected(line, Reason.CONFLICTS_WITH_RECORD.value, error.message)
        except DomainError as error:
            return Rejected(line, registration_reason(error).value, error.message)
        events = citizen.collect_events()
        if not events:
            return None
        index: IndexRow | None = stored
        for event in events:
            index = fold(self.hasher, index, event)
        assert index is not None
        return [self.app.mapper.to_stored_event(e) for e in events], index

    def _entry(self, batch: Sequence[tuple[Chunk, EncodedChunk]], line: int) -> RegisterEntry:
        """The row on `line` parsed again (a valid row: its chunk's encoding kept it)."""
        chunk = next(c for c, _ in reversed(batch) if c.first_line <= line)
        source = (self._header if self._fmt == "csv" else b"") + chunk.line(line) + b"\n"
        for _, row in read_rows(io.BytesIO(source), self._fmt, today=self.today):
            assert isinstance(row, RegisterEntry), f"line {line} was valid when encoded"
            return row
        raise AssertionError(f"line {line} is blank")


def _repeated_lines(rows: Rows) -> list[int]:
    """Lines whose citizen is on an earlier line of the same rows."""
    ids = rows.citizen_ids()
    if len(set(ids)) == len(ids):
        return []
    seen: set[bytes] = set()
    repeated = []
    for line, citizen_id in zip(rows.lines, ids, strict=True):
        if citizen_id in seen:
            repeated.append(line)
        seen.add(citizen_id)
    return repeated


def _positions(rows: Rows, lines: set[int]) -> list[int]:
    if len(lines) == len(rows):
        return list(range(len(rows)))
    return [i for i, line in enumerate(rows.lines) if line in lines]


def _selected(rows: Rows, lines: set[int]) -> Rows:
    if len(lines) == len(rows):
        return rows
    return rows.without(line for line in rows.lines if line not in lines)


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
def _pool(workers: int, config: WorkerConfig) -> Iterator[Pool]:
    """Worker processes forked from a server process that imported the encoding once (and
    the main script, whose import every spawned child would repeat)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", encoding.__name__])
    pool = context.Pool(workers, initializer=start_worker, initargs=(config,))
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _windowed(
    pool: Pool,
    chunks: Iterable[Chunk],
    window: int,
    pending: deque[tuple[Chunk, AsyncResult[EncodedChunk]]],
) -> Iterator[tuple[Chunk, EncodedChunk]]:
    """Chunks with their encodings in order, after those `pending` in the pool, at most
    `window` chunks ahead (bounded memory)."""
    for chunk in chunks:
        pending.append((chunk, pool.apply_async(encode_in_worker, (chunk,))))
        if len(pending) >= window:
            chunk, result = pending.popleft()
            yield chunk, result.get()
    while pending:
        chunk, result = pending.popleft()
        yield chunk, result.get()


def open_extract(path: str) -> AbstractContextManager[BinaryIO]:
    """The extract at `path`, or standard input for ``-``."""
    if path == "-":
        return _stdin()
    return open(path, "rb")


@contextmanager
def _stdin() -> Iterator[BinaryIO]:
    yield os.fdopen(os.dup(0), "rb")
