"""Group commit: concurrent commands of one process share one transaction.

Every save of an Application takes its table lock, so one save per command caps writes
at about a thousand a second. Here the first thread to find no flush in progress
becomes the leader and saves everything queued meanwhile in one `save(*aggregates)`.
If that batch conflicts, its members are saved one by one, so one stale aggregate
fails only its own command (which the runner then retries) and the others commit.
Members are queued as their collected events, not as aggregates: a failed save has
already taken the aggregates' pending events, and the fallback must save them again.
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
    done: threading.Event = field(default_factory=threading.Event)
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitter:
    def __init__(self, save: Save, max_batch: int = MAX_BATCH) -> None:
        self._save = save
        self._max_batch = max_batch
        self._queue: list[_Member] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def save(self, aggregates: Sequence[Aggregate]) -> list[Recording[Any]]:
        """Save `aggregates` atomically, possibly in one transaction with other threads' saves."""
        member = _Member([e for a in aggregates for e in a.collect_events()])
        with self._queue_lock:
            self._queue.append(member)
        while not member.done.is_set():
            with self._flush_lock:
                if member.done.is_set():
                    break
                with self._queue_lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                self._flush(batch)
        if member.error is not None:
            raise member.error
        return member.recordings

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
                member.done.set()

    def _save_alone(self, member: _Member) -> None:
        try:
            member.recordings = self._save(*member.events)
        except BaseException as error:
            member.error = error
