"""The integrator feed: the three contexts' events, merged, resumable, without identifiers.

Each context's notification log is read in order from the position the cursor holds for
it, so no event is ever skipped (gaps in notification ids are normal and harmless). A
page merges the contexts by recording time; the cursor is base64url JSON of the
positions, opaque to clients. Internal command receipts are stepped over.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Notification
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from api.http.dependencies import API_PREFIX, registry_of
from api.http.problems import problem_responses
from api.http.roles import Role
from api.http.schemas.events import EVENT_CONTEXTS, FeedEvent, FeedPage, topic_of
from api.http.security import IDENTIFIERS_SCOPE, Principal, require
from application.commands import RegistryApplication
from application.plain import event_data, event_type
from domain.errors import InvalidValue
from domain.identity import PersonId, parse_person_id
from infrastructure.bootstrap import Registry

router = APIRouter(prefix=f"{API_PREFIX}/events", tags=["integrator feed"])

CONTEXTS = ("population", "mobility", "immunization")
KNOWN_TOPICS = frozenset(topic_of(name) for name in EVENT_CONTEXTS)
MAX_LIMIT = 1000
POLL_SECONDS = 0.2
STREAM_PAGE = 100
MAX_CURSOR_CHARS = 400

IDENTIFYING: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "Citizen.Registered": (("person",), ("full_name",), ("date_of_birth",), ("phone",)),
    "Citizen.ContactChanged": (("phone",),),
    "Citizen.RecordCorrected": (("full_name",), ("date_of_birth",)),
    "Citizen.MovedTo": (("target",),),
    "Citizen.MergedFrom": (("source",),),
    "MobilityRecord.Opened": (("person",),),
    "VaccinationRecord.Opened": (("person",),),
    "MobilityRecord.HealthDeclared": (("declaration", "trip", "vehicle_plate"),),
    "VaccinationRecord.DoseAdministered": (("dose", "vaccinator"),),
    "VaccinationRecord.DoseCorrected": (("dose", "vaccinator"),),
    "VaccinationRecord.MovedTo": (("target",),),
    "VaccinationRecord.HistoryReceived": (("source",),),
}
"""Paths of the data fields served only with the identifiers scope."""
MOVES = frozenset(
    {
        "Citizen.MovedTo",
        "Citizen.MergedFrom",
        "VaccinationRecord.MovedTo",
        "VaccinationRecord.HistoryReceived",
    }
)

_feed_event: TypeAdapter[Any] = TypeAdapter(FeedEvent)


def encode_cursor(positions: Mapping[str, int]) -> str:
    text = json.dumps({c: positions.get(c, 0) for c in CONTEXTS}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> dict[str, int]:
    """The positions of a cursor this feed issued; an empty one starts at the beginning."""
    if not cursor:
        return dict.fromkeys(CONTEXTS, 0)
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        positions = json.loads(raw)
    except (ValueError, binascii.Error):
        positions = None
    if (
        not isinstance(positions, dict)
        or set(positions) != set(CONTEXTS)
        or not all(type(v) is int and v >= 0 for v in positions.values())
    ):
        raise InvalidValue("this is not a cursor the feed issued", field="after")
    return {c: positions[c] for c in CONTEXTS}


@dataclass
class _Fetched:
    rows: list[Notification]
    kept: list[tuple[Notification, DomainEvent]]
    exhausted: bool


@dataclass(frozen=True)
class Page:
    events: list[tuple[dict[str, Any], str]]
    """Each event with the cursor that resumes right after it."""
    next: str
    more: bool


class EventFeed:
    """Reads pages of the merged feed; remembers which person each record is about."""

    MAX_CACHED = 100_000

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._people: dict[UUID, PersonId] = {}

    def page(
        self,
        after: Mapping[str, int],
        limit: int,
        types: Collection[str] = (),
        identifiers: bool = False,
    ) -> Page:
        positions = dict(after)
        fetched: dict[str, _Fetched] = {}
        for context in CONTEXTS:
            topics = [topic_of(t) for t in types if EVENT_CONTEXTS[t] == context]
            if types and not topics:
                continue
            app = self.registry.apps[context]
            fetched[context] = self._fetch(app, positions[context], limit, topics)
        heads = dict.fromkeys(fetched, 0)
        events: list[tuple[dict[str, Any], str]] = []
        while len(events) < limit:
            waiting = [
                (f.kept[heads[c]][1].timestamp, CONTEXTS.index(c), c)
                for c, f in fetched.items()
                if heads[c] < len(f.kept)
            ]
            if not waiting:
                break
            context = min(waiting)[2]
            notification, event = fetched[context].kept[heads[context]]
            heads[context] += 1
            positions[context] = notification.id
            rendered = self._render(context, notification, event, identifiers)
            events.append((rendered, encode_cursor(positions)))
        more = False
        for context, f in fetched.items():
            if heads[context] < len(f.kept):
                more = True
                continue
            if f.rows:
                positions[context] = max(positions[context], f.rows[-1].id)
            more = more or not f.exhausted
        return Page(events, encode_cursor(positions), more)

    def _fetch(
        self, app: RegistryApplication, after: int, want: int, topics: Sequence[str]
    ) -> _Fetched:
        """Up to `want` servable events after `after`, and every row read on the way."""
        fetched = _Fetched([], [], exhausted=False)
        position = after
        while len(fetched.kept) < want:
            batch = app.recorder.select_notifications(
                position, want, topics=topics, inclusive_of_start=False
            )
            for notification in batch:
                fetched.rows.append(notification)
                if notification.topic in KNOWN_TOPICS:
                    event = cast(DomainEvent, app.mapper.to_domain_event(notification))
                    fetched.kept.append((notification, event))
            if len(batch) < want:
                fetched.exhausted = True
                break
            position = batch[-1].id
        return fetched

    def _render(
        self, context: str, notification: Notification, event: DomainEvent, identifiers: bool
    ) -> dict[str, Any]:
        kind = event_type(event)
        data = event_data(event)
        actor = data.pop("actor", None)
        if isinstance(actor, dict) and not identifiers:
            actor.pop("user_id", None)
        ids = self.registry.ids
        if kind == "Citizen.RecordCorrected":
            data["corrected"] = [
                f for f in ("full_name", "date_of_birth", "sex") if data.get(f) is not None
            ]
        for other in ("target", "source"):
            if kind in MOVES and other in data:
                data[f"{other}_subject"] = ids.pseudonym(parse_person_id(data[other]))
        if not identifiers:
            for path in IDENTIFYING.get(kind, ()):
                _drop(data, path)
            for dose in data.get("doses", ()):
                dose.pop("vaccinator", None)
        person = self._person(self.registry.apps[context], event)
        subject: dict[str, str] | None = None
        if person is not None:
            subject = {"pseudonym": ids.pseudonym(person)}
            if identifiers:
                subject["id_number"] = str(person)
        return {
            "id": f"{context}:{notification.id}",
            "type": kind,
            "context": context,
            "schema_version": 1,
            "recorded_at": event.timestamp,
            "subject": subject,
            "actor": actor,
            "data": data,
        }

    def _person(self, app: RegistryApplication, event: DomainEvent) -> PersonId | None:
        """The person of a citizen or personal record; None for lots and risk levels."""
        if not event_type(event).startswith(("Citizen.", "MobilityRecord.", "VaccinationRecord.")):
            return None
        record = event.originator_id
        person = self._people.get(record)
        if person is None:
            found = getattr(event, "person", None)
            if found is None:
                first = next(iter(app.events.get(record, limit=1)))
                found = getattr(first, "person", None)
            if found is None:
                return None
            if len(self._people) >= self.MAX_CACHED:
                self._people.clear()
            person = self._people[record] = found
        return person


def _drop(data: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, last = path
    target: Any = data
    for key in parents:
        target = target.get(key) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(last, None)


def get_event_feed(request: Request) -> EventFeed:
    feed = getattr(request.app.state, "event_feed", None)
    if not isinstance(feed, EventFeed):
        feed = request.app.state.event_feed = EventFeed(registry_of(request))
    return feed


Reader = Annotated[Principal, Depends(require(Role.INTEGRATOR, Role.AUDITOR))]
Types = Annotated[
    list[str] | None,
    Query(
        alias="type",
        description="Only events of these types (repeat the parameter); see docs/events.md",
        examples=[["VaccinationRecord.DoseAdministered"]],
    ),
]


def _types(types: list[str] | None) -> list[str]:
    unknown = sorted(set(types or ()) - set(EVENT_CONTEXTS))
    if unknown:
        raise InvalidValue(
            "unknown event types", unknown=unknown[:10], known=sorted(EVENT_CONTEXTS)
        )
    return list(types or ())


def _sees_identifiers(principal: Principal) -> bool:
    return principal.role is Role.AUDITOR or principal.has_scope(IDENTIFIERS_SCOPE)


@router.get(
    "",
    response_model=FeedPage,
    response_model_exclude_unset=True,
    responses=problem_responses(401, 403, 422, 503),
    summary="A page of events after a cursor",
)
def read_events(
    reader: Reader,
    feed: Annotated[EventFeed, Depends(get_event_feed)],
    after: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_CHARS, description="The `next` of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    types: Types = None,
) -> dict[str, Any]:
    """Ordered within each context, merged by recording time, never skipping an event.
    Direct identifiers are served only with the `identifiers` scope (and to auditors)."""
    page = feed.page(decode_cursor(after), limit, _types(types), _sees_identifiers(reader))
    return {"events": [e for e, _ in page.events], "next": page.next, "more": page.more}


STREAM_DOC = {
    200: {
        "description": (
            "Server-sent events: `id` is the cursor after the event, `event` its type, "
            "`data` the event as in the feed page; `: heartbeat` comments while idle"
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **problem_responses(401, 403, 422, 503),
}


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses=STREAM_DOC,
    summary="The live feed as server-sent events",
)
async def stream_events(
    request: Request,
    reader: Reader,
    feed: Annotated[EventFeed, Depends(get_event_feed)],
    after: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=MAX_CURSOR_CHARS,
            description="Sent by EventSource on reconnection; takes precedence over `after`",
        ),
    ] = None,
    types: Types = None,
    max_events: Annotated[
        int | None, Query(ge=1, le=100_000, description="End the stream after this many")
    ] = None,
    timeout: Annotated[
        float | None, Query(gt=0, le=86_400, description="End the stream after these seconds")
    ] = None,
    heartbeat: Annotated[
        float, Query(ge=0.2, le=300, description="Seconds between heartbeat comments")
    ] = 15.0,
) -> EventSourceResponse:
    """Polls the store every 200 ms and resumes from `Last-Event-ID` after a reconnect."""
    cursor = decode_cursor(last_event_id or after)
    wanted = _types(types)
    identifiers = _sees_identifiers(reader)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None else None

    async def frames() -> AsyncIterator[bytes]:
        positions, sent = cursor, 0
        beat = loop.time()
        while max_events is None or sent < max_events:
            size = STREAM_PAGE if max_events is None else min(STREAM_PAGE, max_events - sent)
            page = await run_in_threadpool(feed.page, positions, size, wanted, identifiers)
            for event, resume in page.events:
                data = _feed_event.dump_json(_feed_event.validate_python(event), exclude_unset=True)
                yield format_sse_event(data_str=data.decode(), event=event["type"], id=resume)
            sent += len(page.events)
            positions = decode_cursor(page.next)
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if not page.more:
                if now - beat >= heartbeat:
                    beat = now
                    yield format_sse_event(comment="heartbeat")
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(frames(), headers={"Cache-Control": "no-store"})
