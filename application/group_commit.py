"""Group commit: concurrent commands of one process share one transaction.

Every save of an Application takes its table lock, so one save per command caps writes
at about a thousand a second. Here the first thread to find no flush in progress
becomes the leader and saves everything queued meanwhile in one `save(*aggregates)`.
If that batch conflicts, its members are saved one by one, so one stale aggregate
fails only its own command (which the runner then retries) and the others commit.
Members are queued as their collected events, not as aggregates: a failed save has
already taken the aggregates' pending events, and the fallback must save them again.

Members that are not leading sleep on an event of their own, set once when their batch
is saved or when they are to lead: the leader whose own save is done hands the lead to
the first member still queued. (Had they waited on a flush lock, every member of a
batch would take it in turn just to see it was done, each turn waiting for the GIL.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.persistence import IntegrityError, Recording

MAX_BATCH = 200

Save = Callable[..., list[Recording[Any]]]


@dataclass
class _Member:
    events: list[CanMutateAggregate[Any]]
    woken: threading.Event = field(default_factory=threading.Event)
    """Set when `done`, or when the member is to lead."""
    done: bool = False
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitter:
    def __init__(self, save: Save, max_batch: int = MAX_BATCH) -> None:
        self._save = save
        self._max_batch = max_batch
        self._lock = threading.Lock()
        """Guards `_queue` and `_leading`."""
        self._queue: list[_Member] = []
        self._leading = False

    def save(self, aggregates: Sequence[Aggregate]) -> list[Recording[Any]]:
        """Save `aggregates` atomically, possibly in one transaction with other threads' saves."""
        member = _Member([e for a in aggregates for e in a.collect_events()])
        with self._lock:
            self._queue.append(member)
            leads = not self._leading
            self._leading = True
        if not leads:
            member.woken.wait()
            leads = not member.done
        if leads:
            self._lead(member)
        if member.error is not None:
            raise member.error
        return member.recordings

    def _lead(self, member: _Member) -> None:
        """Saves what is queued, in batches, until `member` is saved; then hands the lead
        to the first member still queued, or leaves none."""
        try:
            while not member.done:
                with self._lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                self._flush(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].woken.set()
                else:
                    self._leading = False

    def _flush(self, batch: list[_Member]) -> None:
        try:
            if len(batch) == 1:
                self._save_alone(batch[0])
                return
            recordings = self._save(*(e for m in batch for e in m.events))
            owner = {e.originator_id: m for m in batch for e in m.events}
            for recording in recordings:
                owner[recording.domain_event.originator_id].recordings.append(recording)
        except IntegrityError:
            for member in batch:
                self._save_alone(member)
        except BaseException as error:
            for member in batch:
                member.error = error
        finally:
            for member in batch:
                member.done = True
                member.woken.set()

    def _save_alone(self, member: _Member) -> None:
        try:
            member.recordings = self._save(*member.events)
        except BaseException as error:
            member.error = error
