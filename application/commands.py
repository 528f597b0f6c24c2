"""Running a command: the actor, safe retries by request id, and optimistic-concurrency retries.

A command that carries a request id saves a `CommandReceipt` in the same transaction as
its events. Its id derives from the issuer and the request id, so a second attempt
cannot record twice: its save conflicts with the receipt (or its rules refuse the record
the first attempt changed), and it then finds the receipt and returns the first result
instead. The receipt is looked for only then: a first attempt, by far the most common,
reads nothing more than its own command needs.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from application.group_commit import GroupCommitter
from application.ids import IdDeriver
from application.transcoding import register_transcodings
from domain.base import Actor, Clock, recording_clock
from domain.errors import Conflict, DomainError, IdempotencyKeyReused, InvalidValue

MAX_ATTEMPTS = 5
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True)
class Request:
    """Who is asking, and the client's request id when the client may retry."""

    actor: Actor
    request_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a command did: the position of its events and what the caller needs back."""

    position: str
    result: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


Work = tuple[list[Aggregate], dict[str, Any]]
T = TypeVar("T", bound=Aggregate)


class CommandReceipt(Aggregate):
    TOPIC = "vaxreg.app:CommandReceipt"

    class Created(Aggregate.Created):
        TOPIC = "vaxreg.app:CommandReceipt.Created"

    @event("Applied", topic="vaxreg.app:CommandReceipt.Applied")
    def __init__(
        self,
        id: UUID,
        issuer: str,
        command: str,
        fingerprint: str,
        result: dict[str, Any],
    ) -> None:
        self.issuer = issuer
        self.command = command
        self.fingerprint = fingerprint
        self.result = result


def fingerprint(command: str, payload: Mapping[str, Any]) -> str:
    text = json.dumps([command, payload], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class RegistryApplication(Application[UUID]):
    """An Application of one bounded context, with the command runner every context uses."""

    context: ClassVar[str]

    def __init__(self, env: Mapping[str, str], clock: Clock, ids: IdDeriver) -> None:
        self.clock = clock
        self.ids = ids
        super().__init__(env)
        self.committer = GroupCommitter(lambda *aggregates: self.save(*aggregates))

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_transcodings(transcoder)

    def position(self, notification_id: int) -> str:
        return f"{self.context}:{notification_id}"

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def find(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, kind):
            raise TypeError(
                f"{aggregate_id} is a {type(aggregate).__name__}, not a {kind.__name__}"
            )
        return aggregate

    def run(
        self,
        request: Request,
        command: str,
        payload: Mapping[str, Any],
        work: Callable[[], Work],
    ) -> Outcome:
        """Run `work` (load, decide, return changed aggregates) and save it once, atomically."""
        receipt_id = None
        digest = fingerprint(command, payload)
        if request.request_id is not None:
            _check_request_id(request.request_id)
            receipt_id = self.ids.receipt(request.actor.user_id, request.request_id)
        for attempt in range(MAX_ATTEMPTS):
            try:
                with recording_clock(self.clock):
                    aggregates, result = work()
            except DomainError:
                earlier = self._replay(receipt_id, command, digest)
                if earlier is not None:
                    return earlier
                raise
            with recording_clock(self.clock):
                if receipt_id is not None:
                    receipt = CommandReceipt(
                        receipt_id, request.actor.user_id, command, digest, result
                    )
                    aggregates = [*aggregates, receipt]
            if not any(a.pending_events for a in aggregates):
                return Outcome(self.position(self.head()), result)
            try:
                recordings = self.committer.save(aggregates)
            except IntegrityError:
                earlier = self._replay(receipt_id, command, digest)
                if earlier is not None:
                    return earlier
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            last = max(r.notification.id for r in recordings)
            return Outcome(self.position(last), result)
        raise Conflict(
            f"the record kept changing under {MAX_ATTEMPTS} attempts; try again",
            attempts=MAX_ATTEMPTS,
        )

    def _replay(self, receipt_id: UUID | None, command: str, digest: str) -> Outcome | None:
        """The first outcome of this request, if it has one."""
        if receipt_id is None:
            return None
        receipt = self.find(receipt_id, CommandReceipt)
        if receipt is None:
            return None
        if receipt.command != command or receipt.fingerprint != digest:
            raise IdempotencyKeyReused(
                "this request id was already used for a different command",
                first_command=receipt.command,
            )
        return Outcome(self.position(self.head()), dict(receipt.result), replayed=True)


def _check_request_id(request_id: str) -> None:
    if not 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH or not request_id.isprintable():
        raise InvalidValue(f"a request id has 1-{MAX_REQUEST_ID_LENGTH} printable characters")
