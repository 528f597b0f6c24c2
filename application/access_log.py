"""The access log: who read whose personal data, when, and what, for auditors.

A context of its own (``access``), an eventsourcing Application on the same store
settings as the others, so that recording reads never contends with the commands of
the registry's contexts and can be kept, encrypted and exported on its own terms.

The log protects no invariant, so it needs no aggregate and no optimistic concurrency:
its events are appended to two kinds of streams without reading them first.

* A subject's stream (id derived from the person's pseudonym) gets one `SubjectRead`
  per read of their record or history, except checkpoint lookups.
* A reader's stream (id derived from the reader's user id) gets one compact
  `ReadsRecorded` per flush and kind of read: the pseudonyms read and when, in order.
  Checkpoint lookups, the hot path, are recorded only here.

An event's version is its (last) read's time in microseconds times 1000 plus a random tiebreak,
so versions order a stream by time, a time range is a version range, and two writers
collide only on the same microsecond and tiebreak (an `IntegrityError`, retried with
new tiebreaks). No ID number is stored: subjects are pseudonyms, and a citizen reading
their own data is recorded under their pseudonym too.

`AccessRecorder` batches entries on a background thread: one transaction per flush.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import IntegrityError, JSONTranscoder
from eventsourcing.utils import register_topic

from application.transcoding import register_transcodings
from domain.base import Actor

logger = logging.getLogger(__name__)

COMPACT_ONLY = frozenset({"checkpoint_lookup"})
"""Kinds of read recorded only in the reader's compact stream."""
TIEBREAKS = 1000
MAX_WRITE_ATTEMPTS = 5
MAX_SPAN = timedelta(minutes=1)
"""The longest time one compact record covers; its version is the time of its last read."""


@dataclass(frozen=True)
class SubjectRead(DomainEvent):
    """One read of a person's data, in the person's stream."""

    TOPIC = "vaxreg.access:SubjectRead"

    reader: Actor
    what: str
    subject: str


@dataclass(frozen=True)
class ReadsRecorded(DomainEvent):
    """A reader's reads of one kind since the previous flush (times are offsets in ms)."""

    TOPIC = "vaxreg.access:ReadsRecorded"

    reader: Actor
    what: str
    subjects: list[str]
    offsets_ms: list[int]


class AccessLogFull(RuntimeError):
    """The recorder is closing, or holds `max_pending` entries it could not yet store."""


for _event_class in (SubjectRead, ReadsRecorded):
    register_topic(_event_class.TOPIC, _event_class)


@dataclass(frozen=True)
class AccessEntry:
    """One read: `subject` is the person's pseudonym, never their ID number."""

    reader: Actor
    what: str
    subject: str
    at: datetime


@dataclass(frozen=True)
class AccessRecord:
    at: datetime
    reader: Actor
    what: str
    subject: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "reader": {
                "user_id": self.reader.user_id,
                "role": self.reader.role,
                "unit": self.reader.unit,
                "checkpoint": self.reader.checkpoint,
            },
            "what": self.what,
            "subject": self.subject,
        }


def _stream(kind: str, key: str) -> UUID:
    digest = hashlib.sha256(f"access-{kind}\x00{key}".encode()).digest()
    return UUID(bytes=digest[:16], version=4)


def subject_stream(pseudonym: str) -> UUID:
    return _stream("subject", pseudonym)


def reader_stream(user_id: str) -> UUID:
    return _stream("reader", user_id)


MAX_VERSION = 2**63 - 1


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _version(moment: datetime) -> int:
    return _micros(moment) * TIEBREAKS + random.randrange(TIEBREAKS)


def _version_range(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """Versions of reads after `since` up to `until`, clamped to what the store holds
    (a bigint), so absurd bounds such as the year 9999 ask for nothing rather than fail."""
    gt = _micros(since) * TIEBREAKS - 1 if since is not None else None
    lte = _micros(until) * TIEBREAKS + TIEBREAKS - 1 if until is not None else None
    return _clamp(gt), _clamp(lte)


def _clamp(version: int | None) -> int | None:
    return None if version is None else max(-1, min(version, MAX_VERSION))


def _spans(entries: Sequence[AccessEntry]) -> list[list[AccessEntry]]:
    """Time-ordered entries cut into runs of at most `MAX_SPAN`."""
    runs: list[list[AccessEntry]] = []
    for entry in entries:
        if runs and entry.at - runs[-1][0].at <= MAX_SPAN:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


class AccessLog(Application[UUID]):
    name = "access"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_transcodings(transcoder)

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def record(self, entries: Sequence[AccessEntry]) -> int:
        """Append `entries` in one transaction; returns how many events were written."""
        if not entries:
            return 0
        for attempt in range(MAX_WRITE_ATTEMPTS):
            events = self._events(entries)
            try:
                self.events.put(events)
            except IntegrityError:
                if attempt == MAX_WRITE_ATTEMPTS - 1:
                    raise
                continue
            return len(events)
        raise AssertionError("unreachable")

    def _events(self, entries: Sequence[AccessEntry]) -> list[DomainEvent]:
        used: set[tuple[UUID, int]] = set()

        def version(stream: UUID, moment: datetime) -> int:
            candidate = _version(moment)
            while (stream, candidate) in used:
                candidate = _version(moment)
            used.add((stream, candidate))
            return candidate

        events: list[DomainEvent] = []
        groups: dict[tuple[Actor, str], list[AccessEntry]] = {}
        for entry in entries:
            groups.setdefault((entry.reader, entry.what), []).append(entry)
            if entry.what in COMPACT_ONLY:
                continue
            stream = subject_stream(entry.subject)
            events.append(
                SubjectRead(
                    originator_id=stream,
                    originator_version=version(stream, entry.at),
                    timestamp=entry.at,
                    reader=entry.reader,
                    what=entry.what,
                    subject=entry.subject,
                )
            )
        for (reader, what), group in groups.items():
            group.sort(key=lambda e: e.at)
            for part in _spans(group):
                first, last = part[0].at, part[-1].at
                stream = reader_stream(reader.user_id)
                events.append(
                    ReadsRecorded(
                        originator_id=stream,
                        originator_version=version(stream, last),
                        timestamp=first,
                        reader=reader,
                        what=what,
                        subjects=[e.subject for e in part],
                        offsets_ms=[round((e.at - first).total_seconds() * 1000) for e in part],
                    )
                )
        return events

    def reads_of(
        self,
        pseudonym: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[AccessRecord]:
        """Reads of a person's record and history (not checkpoint lookups), oldest first."""
        gt, lte = _version_range(since, until)
        events = self.events.get(subject_stream(pseudonym), gt=gt, lte=lte, limit=limit)
        return [
            AccessRecord(e.timestamp, e.reader, e.what, e.subject)
            for e in cast(Iterable[SubjectRead], events)
        ]

    def reads_by(
        self,
        user_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[AccessRecord]:
        """Everything a reader read, checkpoint lookups included, oldest first."""
        gt, lte = _version_range(since, until + MAX_SPAN if until is not None else None)
        records: list[AccessRecord] = []
        for event in cast(
            Iterable[ReadsRecorded], self.events.get(reader_stream(user_id), gt=gt, lte=lte)
        ):
            for subject, offset in zip(event.subjects, event.offsets_ms, strict=True):
                at = datetime.fromtimestamp(event.timestamp.timestamp() + offset / 1000, UTC)
                if (since is None or at >= since) and (until is None or at <= until):
                    records.append(AccessRecord(at, event.reader, event.what, subject))
            if len(records) >= limit:
                break
        records.sort(key=lambda r: r.at)
        return records[:limit]


@dataclass
class _Pending:
    entry: AccessEntry
    done: Future[None] | None = None
    """For a caller waiting until the entry is stored."""


class AccessRecorder:
    """Writes entries in batches on a background thread.

    `submit` returns at once with a future that is done when the entry is stored; a
    caller that must not answer before its read is recorded waits for it, and its
    submission starts a flush at once. `queue` (the hot path) only queues. Entries are
    flushed every `interval` seconds. While the store is down, batches are kept and
    retried; beyond `max_pending` new entries are refused (their futures fail, `queue`
    answers False) rather than growing without bound.
    `drain` (on a server's shutdown) and `close` write everything still pending, so a
    clean shutdown loses nothing; a crash
    loses the entries of at most the last `interval` (and any still being retried).
    """

    def __init__(
        self,
        log: AccessLog,
        *,
        interval: float = 0.2,
        max_batch: int = 2000,
        max_pending: int = 200_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self.log = log
        self.interval = interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self.recorded = 0
        self.refused = 0
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def submit(self, entry: AccessEntry, urgent: bool = False) -> Future[None]:
        done: Future[None] = Future()
        if not self._accept(_Pending(entry, done)):
            done.set_exception(AccessLogFull("the access log is not accepting reads"))
        elif urgent:
            self._wake.set()
        return done

    def queue(self, entry: AccessEntry) -> bool:
        """Queue `entry` for the next flush without a future; False if it was refused."""
        return self._accept(_Pending(entry))

    def _accept(self, pending: _Pending) -> bool:
        with self._lock:
            if self._stopping or len(self._pending) >= self.max_pending:
                self.refused += 1
                return False
            self._pending.append(pending)
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write what is pending now, in the caller's thread (raises if the store is down).

        Entries submitted meanwhile wait for the next flush: under a steady stream of
        reads the thread writes one batch per interval, not one small batch after another.
        """
        with self._lock:
            due = len(self._pending)
        while due > 0:
            with self._lock:
                batch = self._pending[: min(due, self.max_batch)]
                del self._pending[: len(batch)]
            if not batch:
                return
            try:
                self.log.record([p.entry for p in batch])
            except BaseException:
                with self._lock:
                    self._pending[:0] = batch
                raise
            due -= len(batch)
            self.recorded += len(batch)
            for p in batch:
                if p.done is not None:
                    p.done.set_result(None)

    def drain(self, timeout: float = 30.0) -> None:
        """Write everything pending, retrying for `timeout` seconds; then fail what is left."""
        deadline = time.monotonic() + timeout
        while self.pending():
            try:
                self.flush()
            except Exception as error:
                if time.monotonic() >= deadline:
                    self._fail_pending(error)
                    return
                time.sleep(self.retry_seconds)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, drain what is pending, stop the thread and close the log."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self.drain(timeout)
        self.log.close()

    def _fail_pending(self, error: BaseException) -> None:
        with self._lock:
            lost, self._pending = self._pending, []
        logger.error("access log: %d reads could not be recorded (%s)", len(lost), type(error))
        for p in lost:
            if p.done is not None:
                p.done.set_exception(error)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as error:
                logger.warning("access log: store unavailable (%s)", type(error).__qualname__)
                time.sleep(self.retry_seconds)
