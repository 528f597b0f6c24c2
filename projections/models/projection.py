"""The `citizens` projection: each citizen's state, and every read model derived from it.

Logical keys (inside the engine's ``<ns>:{citizens.p<i>}:g<gen>:`` prefix)::

    c:<2 hex>           hash    pseudonym (16 bytes) -> the citizen's value, deflated:
                                <checkpoint timeline>\\x1c<state>; bucketed by the
                                pseudonym's first hex digits
    q:<2 hex digits>    hash    declaration id (16 bytes) -> pseudonym (16 bytes)
    o:<province>:<2 hex> hash   pseudonym (16 bytes) -> "" for the travellers whose
                                declaration leaves from there, bucketed by the pseudonym's
                                first hex digits so buckets stay small (listpack)
    r                   hash    area risk aggregate id -> [area, [[from, level], ...]]
    a:<area>            zset    arrivals (see :mod:`.arrivals`)
    wf:<unit>, wd:<unit> zset   work lists (see :mod:`.worklists`)
    sd:<day>, sp, sc:<day> hash statistics (see :mod:`.statistics`)

Every event of a citizen loads that citizen's state (once per batch) and changes the
part of its context; at the end of the batch (:meth:`CitizenProjection.finish`) what
derives from each touched citizen is rewritten once: sorted-set members and counters
move by the difference between what the stored and the new state give. A risk level change rewrites
the citizens whose declaration leaves from the area's province (``o:``), and no others.

Mobility and vaccination records name their person only in their first event; later
events are attributed through :class:`Owners` (learnt from first events, falling back to
the event store).

Text many citizens share (birth dates, provinces, products, units) is interned: a
rebuild holds many states at once.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from sys import intern
from typing import Any, NamedTuple
from uuid import UUID

from application.ids import IdDeriver
from domain.checkpoint_policy import DEFAULT_POLICY, Policy
from domain.clock import local_day
from domain.doses import DoseKind
from domain.names import masked
from domain.vaccines import CATALOGUE, Catalogue
from projections.engine import (
    DomainEvent,
    Projection,
    Read,
    Todo,
    ViewBatch,
    handle_events,
    partition_for,
)
from projections.forked import ForkedShare, spare_cores
from projections.models import statistics
from projections.models.arrivals import Entry, arrival_entries
from projections.models.checkpoint import (
    STATIC,
    TIMELINE_END,
    RiskBook,
    split_area,
    stored_name,
    timeline,
)
from projections.models.state import (
    CitizenState,
    DeclarationState,
    DoseState,
    ScreeningState,
    TestState,
    us,
)
from projections.models.worklists import worklist_entries

NAME = "citizens"
RISK_KEY = "r"
POPULATION = "vaxreg.population:Citizen."
MOBILITY = "vaxreg.mobility:MobilityRecord."
RISK = "vaxreg.mobility:AreaRisk."
IMMUNIZATION = "vaxreg.immunization:VaccinationRecord."

TOPICS = (
    *(
        POPULATION + name
        for name in ("Registered", "ResidenceChanged", "RecordCorrected", "Died", "MovedTo")
    ),
    MOBILITY + "Opened",
    MOBILITY + "HealthDeclared",
    MOBILITY + "CheckpointChecked",
    RISK + "Assessed",
    RISK + "LevelChanged",
    *(
        IMMUNIZATION + name
        for name in (
            "Opened",
            "Registered",
            "Screened",
            "DoseAdministered",
            "DoseCorrected",
            "DoseVoided",
            "AdverseEventReported",
            "RecoveryRecorded",
            "MovedTo",
            "HistoryReceived",
        )
    ),
)


_FAMILIES = (POPULATION, MOBILITY, RISK, IMMUNIZATION)


@cache
def _route_of(event_class: type) -> tuple[str | None, str]:
    """(the family of an event class's topic: one of the topic prefixes above, or None;
    the event's class name)."""
    topic = str(getattr(event_class, "TOPIC", ""))
    family = next((f for f in _FAMILIES if topic.startswith(f)), None)
    return family, topic.rpartition(".")[2]


def citizen_bucket(pseudonym: str) -> str:
    """The hash holding a citizen's value, under the field :func:`citizen_field`."""
    return f"c:{pseudonym[:2]}"


def citizen_field(pseudonym: str) -> bytes:
    return bytes.fromhex(pseudonym)


def _state_read(pseudonym: str) -> Read:
    """The read of a citizen's stored value."""
    return ("hget", citizen_bucket(pseudonym), citizen_field(pseudonym))


ORIGIN_BUCKETS = 256
"""Below 512 travellers per bucket (131k per province) a bucket is a listpack: about a
third of a set member's size; above, a bucket costs what a set would."""


def origin_bucket(origin: str, pseudonym: str) -> str:
    """The bucket of the travellers leaving from the origin's province holding this one."""
    return f"o:{split_area(origin)[0]}:{pseudonym[:2]}"


def origin_buckets(area: str) -> list[str]:
    """Every bucket of the travellers leaving from the area's province."""
    return [f"o:{split_area(area)[0]}:{b:02x}" for b in range(ORIGIN_BUCKETS)]


def declaration_bucket(declaration_id: UUID) -> str:
    """One of 256 buckets: listpacks up to 131k current declarations, like ``o:``."""
    return f"q:{declaration_id.hex[:2]}"


_SURNAMES = "Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý Đinh Trương Đào"
_ZDICT = (
    "".join(STATIC).encode()
    + b'"name":"","birth_year":19","birth_year":20","declaration":{"id":"","origin":"'
    + b'","destination":"","travel_date":"202","valid_until":"202","protected_from":"202'
    + b'","recovered_until":"202","test":{"kind":"pcr","kind":"rapid_antigen",'
    + b'"outcome":"negative","outcome":"positive","sampled_at":"202'
    + _SURNAMES.encode()
    + b'"booster","primary",[["comirnaty","spikevax","vaxzevria"]],'
    + b'"HN-CP-0","79-","001.","079.",1630288800000000,259200000000,18'
)
"""Preset dictionary of a stored value: text most values hold, the commonest last.
Changing it means bumping `LAYOUT_VERSION`."""
_WBITS = -12
"""A window that holds the dictionary and a whole value."""


class _Packers(threading.local):
    """Per thread, a compressor with the dictionary loaded, copied for each value (cheaper
    than loading it again). Its small hash table (memory level 4) suits values of a few
    hundred bytes: clearing the largest (level 9, 128 kB) cost more than compressing such
    a value. One per thread, as a copy holds its compressor's lock: a thread forking a
    child (see :mod:`projections.forked`) never leaves it one that another thread held."""

    def __init__(self) -> None:
        self.primed = zlib.compressobj(9, zlib.DEFLATED, _WBITS, 4, zlib.Z_DEFAULT_STRATEGY, _ZDICT)


_PACKERS = _Packers()


def join_value(timeline_part: bytes, state_part: bytes) -> bytes:
    """A citizen's stored value: the timeline as served and the state, deflated together
    (so what the state repeats of the timeline costs little)."""
    packer = _PACKERS.primed.copy()
    return packer.compress(timeline_part + TIMELINE_END + state_part) + packer.flush()


def unpack(value: bytes) -> bytes:
    """A stored value inflated: its timeline first, which :func:`.checkpoint.pick` reads."""
    return zlib.decompressobj(_WBITS, _ZDICT).decompress(value)


def split_value(value: bytes) -> tuple[bytes, bytes]:
    """(timeline, state) of a citizen's stored value."""
    timeline_part, _, state_part = unpack(value).partition(TIMELINE_END)
    return timeline_part, state_part


def decode_state(stored: bytes | None) -> CitizenState:
    """A citizen's state from their stored value."""
    if not stored:
        return CitizenState()
    timeline_part, state_part = split_value(stored)
    return CitizenState.decode(state_part, stored_name(timeline_part))


def risk_book(raw: Mapping[bytes, bytes]) -> dict[str, list[tuple[int, int]]]:
    book: dict[str, list[tuple[int, int]]] = {}
    for value in raw.values():
        area, periods = json.loads(value)
        book[area] = sorted((int(e), int(level)) for e, level in periods)
    return book


OwnerLookup = Callable[[str, UUID], str]
"""(context, record id) -> the owner's pseudonym, read from the record's first event."""


class Owners:
    """Which citizen a mobility or vaccination record belongs to.

    Learnt from records' first events as they pass; a record whose first event is not
    remembered (evicted, or applied before this process started) is looked up once.
    Records are remembered by their ids' integers, whose hash costs no Python call.
    """

    def __init__(self, lookup: OwnerLookup | None, capacity: int = 200_000) -> None:
        self._lookup = lookup
        self._capacity = capacity
        self._known: OrderedDict[int, str] = OrderedDict()

    def learn(self, record_id: UUID, pseudonym: str) -> None:
        key = record_id.int
        self._known[key] = pseudonym
        self._known.move_to_end(key)
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def learn_all(self, owners: Iterable[tuple[int, str]]) -> None:
        """Learns each (record id's integer, pseudonym)."""
        for key, pseudonym in owners:
            self._known[key] = pseudonym
            self._known.move_to_end(key)
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def without_lookups(self) -> None:
        """From now on, an owner not known raises LookupError instead of being looked up."""
        self._lookup = None

    def known(self, record_id: UUID) -> str | None:
        return self._known.get(record_id.int)

    def owner(self, context: str, record_id: UUID) -> str:
        found = self._known.get(record_id.int)
        if found is None:
            if self._lookup is None:
                raise LookupError(f"the owner of record {record_id} is not known")
            found = self._lookup(context, record_id)
            self.learn(record_id, found)
        return found


class _Derived(NamedTuple):
    value: bytes
    entries: set[Entry]
    counts: statistics.Contribution


class _Touched(NamedTuple):
    state: CitizenState
    before: _Derived
    """What the stored state gave, with the batch's first risk levels."""
    origin: str | None
    """The stored declaration's origin."""


_NOTHING = _Derived(b"", set(), statistics.Contribution())
"""What a citizen with no stored value gives."""

_TOUCHED = "citizens"
_RISK = "risk"


_PARTS: dict[str, tuple[Callable[[CitizenState], Any], Callable[[CitizenState, Any], None]]] = {
    "population": (CitizenState.population_part, CitizenState.take_population_part),
    "immunization": (CitizenState.immunization_part, CitizenState.take_immunization_part),
}
"""The contexts whose events fill only their citizen's state: how a forked child's part
is taken out of a state and put into another."""


LAYOUT_VERSION = 9
"""Bumped when what the projection stores changes meaning."""


def _policy_fingerprint(policy: Policy) -> int:
    """A number that changes with any of the policy's rules or thresholds."""
    rules = [[r.verdict.value, r.if_any, r.unless_any] for r in policy.rules]
    levels = sorted(policy.high_risk_levels)
    form = [rules, policy.otherwise.value, levels, policy.negative_test_hours]
    return zlib.crc32(json.dumps(form).encode())


class CitizenProjection(Projection):
    """Its version is its layout's and its policy's: verdicts are stored as the policy
    decided them, so another policy rebuilds the read models."""

    name = NAME
    contexts = ("population", "mobility", "immunization")
    topics = TOPICS
    replayed_apart = frozenset(_PARTS)
    fork_from: int | None = 4_000
    """Citizens a :meth:`finish` holds from which a forked child derives half of them;
    None: never. Below, forking costs more than it saves (and only rebuilds and large
    catch-up batches hold that many)."""

    def __init__(
        self,
        ids: IdDeriver,
        owners: Owners,
        policy: Policy = DEFAULT_POLICY,
        catalogue: Catalogue = CATALOGUE,
        rebuild_citizens: int | None = None,
    ) -> None:
        self.ids = ids
        self.owners = owners
        self.policy = policy
        self.version = LAYOUT_VERSION << 32 | _policy_fingerprint(policy)
        self.catalogue = catalogue
        self.hold_limit = rebuild_citizens

    # ------------------------------------------------------------------ engine hooks

    def _route(self, event: DomainEvent) -> tuple[str | None, str]:
        return _route_of(type(event))

    def _pseudonym(
        self, event: DomainEvent, context: str, family: str | None, kind: str
    ) -> str | None:
        if family is POPULATION:
            return str(event.originator_id.hex)
        if family is MOBILITY or family is IMMUNIZATION:
            if kind == "Opened":
                known = self.owners.known(event.originator_id)
                if known is not None:
                    return known
                pseudonym = self.ids.pseudonym(getattr(event, "person"))  # noqa: B009
                self.owners.learn(event.originator_id, pseudonym)
                return pseudonym
            return self.owners.owner(context, event.originator_id)
        return None

    def partition_of(self, event: DomainEvent) -> int:
        """A citizen's partition; risk events would have to reach every partition, which
        the engine's one-partition-per-event routing cannot do, so `partitions` stays 1."""
        family, kind = self._route(event)
        context = "immunization" if family is IMMUNIZATION else "mobility"
        pseudonym = self._pseudonym(event, context, family, kind)
        return partition_for(pseudonym, self.partitions) if pseudonym else 0

    def prefetch(self, event: DomainEvent, context: str) -> Iterable[Read]:
        reads: list[Read] = [("hgetall", RISK_KEY)]
        pseudonym = self._pseudonym(event, context, *self._route(event))
        if pseudonym is not None:
            reads.append(_state_read(pseudonym))
        return reads

    def handle(self, event: DomainEvent, context: str, view: ViewBatch) -> None:
        family, kind = self._route(event)
        if family is RISK:
            self._risk_changed(event, kind, view)
            return
        pseudonym = self._pseudonym(event, context, family, kind)
        if pseudonym is None or kind == "Opened":
            return
        state = self._touch(view, pseudonym).state
        if family is POPULATION:
            self._citizen(kind, event, state)
        elif family is MOBILITY:
            self._mobility(kind, event, state, view, pseudonym)
        else:
            self._vaccination(kind, event, state)
        state.seen = max(state.seen, us(getattr(event, "timestamp")))  # noqa: B009

    def held(self, view: ViewBatch) -> int:
        return len(view.scratch.get(_TOUCHED, ()))

    def replay_share(
        self, context: str, todos: Iterator[Todo], views: Sequence[ViewBatch], prefetch: bool
    ) -> Any:
        """(the owners of the records replayed, and per citizen changed: partition,
        pseudonym, latest event time and the context's part). A record whose first event
        is not known here fails the share (the child does not read the event store)."""
        self.owners.without_lookups()
        part_of = _PARTS[context][0]
        owners: set[tuple[int, str]] = set()
        changed: dict[str, int] = {}
        for todo in todos:
            handle_events(self, context, todo, views, prefetch)
            for event, part in todo:
                family, kind = self._route(event)
                pseudonym = self._pseudonym(event, context, family, kind)
                if pseudonym is None:
                    continue
                if family is not POPULATION:
                    owners.add((event.originator_id.int, pseudonym))
                if kind != "Opened":
                    changed[pseudonym] = part
        citizens = []
        for pseudonym, part in changed.items():
            state = self._touch(views[part], pseudonym).state
            citizens.append((part, pseudonym, state.seen, part_of(state)))
        return list(owners), citizens

    def absorb_share(
        self, context: str, share: Any, views: Sequence[ViewBatch], prefetch: bool
    ) -> None:
        """With `prefetch`, reads first what the states of the citizens named were
        stored as."""
        owners, citizens = share
        self.owners.learn_all(owners)
        if prefetch:
            reads: dict[int, list[Read]] = {}
            for part, pseudonym, _, _ in citizens:
                reads.setdefault(part, [("hgetall", RISK_KEY)]).append(_state_read(pseudonym))
            for part, wanted in reads.items():
                views[part].preload(wanted)
        take_part = _PARTS[context][1]
        for part, pseudonym, seen, fields in citizens:
            state = self._touch(views[part], pseudonym).state
            take_part(state, fields)
            state.seen = max(state.seen, seen)

    def finish(self, view: ViewBatch) -> None:
        """Rewrite what derives from each citizen the batch touched, once.

        Each citizen's state is let go once written: a rebuild's batch holds up to
        :attr:`hold_limit` citizens. From :attr:`fork_from` citizens, a forked child
        derives half of them on a spare core meanwhile.
        """
        touched: dict[str, _Touched] = view.scratch.get(_TOUCHED, {})
        if not touched:
            return
        risk = risk_book(view.hgetall(RISK_KEY))
        if self.fork_from is not None and len(touched) >= self.fork_from and spare_cores():
            self._finish_with_a_child(view, touched, risk)
        while touched:
            pseudonym, t = touched.popitem()
            self._rewrite(view, pseudonym, t, self._derive_anew(pseudonym, t.state, risk))

    def _finish_with_a_child(
        self, view: ViewBatch, touched: dict[str, _Touched], risk: RiskBook
    ) -> None:
        """Derives half of `touched` in a forked child (see :mod:`.forked`) and the other
        half here, and rewrites both; what the child failed to derive is left in
        `touched`."""
        theirs = [touched.popitem() for _ in range(len(touched) // 2)]
        child = ForkedShare(lambda: [tuple(self._derive_anew(p, t.state, risk)) for p, t in theirs])
        started = time.monotonic()
        while touched:
            pseudonym, t = touched.popitem()
            self._rewrite(view, pseudonym, t, self._derive_anew(pseudonym, t.state, risk))
        ours = time.monotonic() - started
        derived = child.result_beside(ours)
        if derived is None:
            touched.update(theirs)
            return
        for (pseudonym, t), (value, entries, counts) in zip(theirs, derived, strict=True):
            self._rewrite(view, pseudonym, t, _Derived(value, entries, counts))

    def _rewrite(self, view: ViewBatch, pseudonym: str, t: _Touched, after: _Derived) -> None:
        self._write(view, pseudonym, t.before, after)
        declaration = t.state.declaration
        origin_after = declaration.origin if declaration else None
        if t.origin != origin_after:
            raw = bytes.fromhex(pseudonym)
            if t.origin is not None:
                view.hdel(origin_bucket(t.origin, pseudonym), raw)
            if origin_after is not None:
                view.hset(origin_bucket(origin_after, pseudonym), raw, b"")

    def _touch(self, view: ViewBatch, pseudonym: str) -> _Touched:
        """The citizen's state in this batch, with what its stored state gave."""
        touched: dict[str, _Touched] | None = view.scratch.get(_TOUCHED)
        if touched is None:
            touched = view.scratch[_TOUCHED] = {}
        found = touched.get(pseudonym)
        if found is None:
            stored = view.hget(citizen_bucket(pseudonym), citizen_field(pseudonym))
            state = decode_state(stored)
            before = (
                self._derive(pseudonym, state, self._batch_risk(view), stored)
                if stored
                else _NOTHING
            )
            origin = state.declaration.origin if state.declaration else None
            found = touched[pseudonym] = _Touched(state, before, origin)
        return found

    def _batch_risk(self, view: ViewBatch) -> RiskBook:
        """The risk levels as stored when the batch began (what stored values were derived
        with), whatever risk events of the batch changed since."""
        risk: RiskBook | None = view.scratch.get(_RISK)
        if risk is None:
            risk = view.scratch[_RISK] = risk_book(view.hgetall(RISK_KEY))
        return risk

    # ------------------------------------------------------------------- derivation

    def _derive_anew(self, pseudonym: str, state: CitizenState, risk: RiskBook) -> _Derived:
        """What `state` gives after its changes."""
        state.changed()
        return self._derive(pseudonym, state, risk)

    def _derive(
        self, pseudonym: str, state: CitizenState, risk: RiskBook, stored: bytes | None = None
    ) -> _Derived:
        """What `state` gives; `stored` is the value already written for it, when known."""
        value = b"" if stored is None else stored
        if stored is None and (
            state.masked_name is not None or state.has_vaccination_record or state.declaration
        ):
            value = join_value(timeline(state, risk, self.policy, self.catalogue), state.encode())
        entries = arrival_entries(pseudonym, state, risk, self.policy) | worklist_entries(
            pseudonym, state, self.catalogue
        )
        return _Derived(value, entries, statistics.contribution(state, self.catalogue))

    def _write(self, view: ViewBatch, pseudonym: str, before: _Derived, after: _Derived) -> None:
        if after.value != before.value:
            bucket, field = citizen_bucket(pseudonym), citizen_field(pseudonym)
            if after.value:
                view.hset(bucket, field, after.value)
            else:
                view.hdel(bucket, field)
        for k, member, _ in before.entries - after.entries:
            if not any(k == k2 and member == m2 for k2, m2, _ in after.entries):
                view.zrem(k, member)
        for k, member, score in after.entries - before.entries:
            view.zadd(k, member, score)
        for (k, counter), amount in statistics.difference(before.counts, after.counts).items():
            view.hincrby(k, counter, amount)

    # ---------------------------------------------------------------------- events

    def _citizen(self, kind: str, e: Any, state: CitizenState) -> None:
        if kind == "Registered":
            state.masked_name = masked(e.full_name)
            state.date_of_birth = intern(e.date_of_birth.isoformat())
            state.province = intern(e.residence.province)
        elif kind == "RecordCorrected":
            if e.full_name:
                state.masked_name = masked(e.full_name)
            if e.date_of_birth:
                state.date_of_birth = intern(e.date_of_birth.isoformat())
        elif kind == "ResidenceChanged":
            state.province = intern(e.residence.province)
        elif kind in ("Died", "MovedTo"):
            state.gone = True

    def _mobility(
        self, kind: str, e: Any, state: CitizenState, view: ViewBatch, pseudonym: str
    ) -> None:
        if kind == "HealthDeclared":
            self._declared(e.declaration, state, view, pseudonym)
        elif kind == "CheckpointChecked":
            check = e.check
            day = local_day(check.checked_at)
            view.hincrby(f"sc:{day}", f"{check.checkpoint}|{check.verdict.value}", 1)

    def _declared(self, d: Any, state: CitizenState, view: ViewBatch, pseudonym: str) -> None:
        trip = d.trip
        view.hincrby(f"sc:{local_day(d.declared_at)}", f"{trip.checkpoint or '-'}|declared", 1)
        if d.test is not None and (
            state.test is None or us(d.test.sampled_at) >= state.test.sampled_at
        ):
            state.test = TestState(d.test.kind.value, d.test.outcome.value, us(d.test.sampled_at))
        previous = state.declaration
        if previous is not None and previous.declared_at > us(d.declared_at):
            return
        if previous is not None:
            old = UUID(hex=previous.declaration_id)
            view.hdel(declaration_bucket(old), old.bytes)
        state.declaration = DeclarationState(
            d.declaration_id.hex,
            str(trip.origin),
            str(trip.destination),
            trip.travel_date.isoformat(),
            us(d.declared_at),
            us(d.valid_until),
            [s.value for s in d.symptoms],
            d.contact_with_confirmed_case,
            d.stayed_in_high_risk_area,
            trip.checkpoint,
        )
        view.hset(
            declaration_bucket(d.declaration_id), d.declaration_id.bytes, bytes.fromhex(pseudonym)
        )

    def _vaccination(self, kind: str, e: Any, state: CitizenState) -> None:
        if kind == "Registered":
            state.registered = (e.unit, us(e.timestamp))
        elif kind == "Screened":
            s = e.screening
            if state.screening is None or us(s.screened_at) >= state.screening.screened_at:
                until = s.postponed_until.isoformat() if s.postponed_until else None
                state.screening = ScreeningState(s.outcome.value, us(s.screened_at), s.unit, until)
        elif kind == "DoseAdministered":
            state.doses.append(_dose(e.dose))
        elif kind == "DoseCorrected":
            short = e.dose.dose_id.hex[:8]
            state.doses = [
                _dose(e.dose, d.severe) if d.dose_id == short else d for d in state.doses
            ]
        elif kind == "DoseVoided":
            short = e.dose_id.hex[:8]
            state.doses = [d for d in state.doses if d.dose_id != short]
        elif kind == "AdverseEventReported":
            if e.report.severity.value == "severe":
                short = e.report.dose_id.hex[:8]
                for d in state.doses:
                    if d.dose_id == short:
                        d.severe = True
        elif kind == "RecoveryRecorded":
            day = e.positive_test_on.isoformat()
            state.recovered_on = max(day, state.recovered_on or day)
        elif kind == "MovedTo":
            state.record_moved = True
        elif kind == "HistoryReceived":
            known = {d.dose_id for d in state.doses}
            severe = {a.dose_id.hex[:8] for a in e.adverse_events if a.severity.value == "severe"}
            for dose in e.doses:
                kept = _dose(dose, dose.dose_id.hex[:8] in severe)
                if kept.dose_id not in known:
                    state.doses.append(kept)
            for s in e.screenings:
                self._vaccination("Screened", _Screened(s), state)
            if e.recovered_on is not None:
                day = e.recovered_on.isoformat()
                state.recovered_on = max(day, state.recovered_on or day)

    def _risk_changed(self, event: DomainEvent, kind: str, view: ViewBatch) -> None:
        e: Any = event
        self._batch_risk(view)
        raw = view.hgetall(RISK_KEY)
        field = event.originator_id.hex.encode()
        if kind == "Assessed":
            area, periods = str(e.area), []
        elif field in raw:
            area, periods = json.loads(raw[field])
        else:
            return
        periods = [*periods, [us(e.effective_from), e.level.value]]
        view.hset(RISK_KEY, field, json.dumps([area, periods], separators=(",", ":")))
        buckets = origin_buckets(area)
        view.preload([("hgetall", bucket) for bucket in buckets])
        travellers = sorted(p for bucket in buckets for p in view.hgetall(bucket))
        view.preload([("hget", citizen_bucket(p.hex()), p) for p in travellers])
        for pseudonym in travellers:
            self._touch(view, pseudonym.hex())


@dataclass(frozen=True)
class _Screened:
    screening: Any


def _dose(dose: Any, severe: bool = False) -> DoseState:
    return DoseState(
        dose.dose_id.hex[:8],
        intern(dose.product),
        us(dose.given_at),
        dose.kind is DoseKind.BOOSTER,
        intern(dose.unit),
        severe,
    )
