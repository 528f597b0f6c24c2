"""What every aggregate shares: the actor behind each event and the clock that times it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from eventsourcing.domain import Aggregate


@dataclass(frozen=True)
class Actor:
    """Who recorded an event: a user id, their role, and the unit or checkpoint they act for."""

    user_id: str
    role: str
    unit: str | None = None
    checkpoint: str | None = None


SYSTEM = Actor(user_id="system", role="system")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_recording_clock: ContextVar[Clock] = ContextVar("recording_clock", default=utc_now)


@contextmanager
def recording_clock(clock: Clock) -> Iterator[None]:
    """Time the events triggered inside the block with `clock` (the application's injected one)."""
    token = _recording_clock.set(clock)
    try:
        yield
    finally:
        _recording_clock.reset(token)


def recorded_now() -> datetime:
    return _recording_clock.get()()


class RegistryAggregate(Aggregate):
    """Base of vaxreg's aggregates: event timestamps come from the recording clock."""

    class Event(Aggregate.Event):
        @staticmethod
        def create_timestamp() -> datetime:
            return recorded_now()
