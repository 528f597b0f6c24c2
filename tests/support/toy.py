"""A toy aggregate and application for testing the projection engine without the domain."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Counter(Aggregate):
    TOPIC = "toy:Counter"

    class Created(Aggregate.Created):
        TOPIC = "toy:Counter.Created"
        label: str

    class Bumped(Aggregate.Event):
        TOPIC = "toy:Counter.Bumped"
        amount: int

    @event(Created)
    def __init__(self, label: str) -> None:
        self.label = label

    @event(Bumped)
    def bump(self, amount: int) -> None:
        pass


class Counters(Application[UUID]):
    pass


def record(app: Counters, steps: list[tuple[int, int]], counters: list[Counter]) -> int:
    """Apply (counter index, amount) steps; an index beyond the list creates a counter.
    Returns the last notification id."""
    last = 0
    for index, amount in steps:
        if index >= len(counters):
            counters.append(Counter(label=f"c{amount % 3}"))
            target = counters[-1]
        else:
            target = counters[index]
            target.bump(amount)
        last = app.save(target)[-1].notification.id
    return last
