"""Checkpoint status: a timeline of ready-serialised documents, one per period of time.

A citizen's stored value inflates to ``<timeline>\\x1c<state>\\x1c<eligibility>`` (see
:mod:`.projection`). The timeline holds the document a checkpoint is served in each
period between the moments its facts change by themselves (a declaration's validity,
protection 14 days after the last primary dose, the end of a recovery, a test growing
older than the policy allows, a risk level taking effect)::

    <t0>:<ij...>;<t1>:<ik...>\\x1d<fragment>\\x1e<fragment>...

Period ``n`` starts at ``t<n>`` (microseconds since the epoch; the first is 0) and its
document is ``{`` + its fragments joined by ``,`` + ``}``; each fragment is named by one
byte (see :data:`SYMBOLS`). A fragment is one top-level member of the document or of its
``declaration`` / ``vaccination`` objects, so most are the same for every citizen: those
are in the code's :data:`STATIC` table (changing it means bumping the projection's
version) and only the citizen's own ones are stored, once even if several periods
share them. :func:`pick` serves the document of a moment by comparing integers and
joining bytes: no JSON is parsed on the hot path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from domain.checkpoint_policy import CONDITIONS, Facts, Policy, decide
from domain.clock import local_day
from domain.mobility import OLDEST_TEST, Verdict
from domain.status import Status, VaccinationStatus
from domain.vaccines import Catalogue
from projections.models.state import CitizenState, day_start_us, from_us

TIMELINE_END = b"\x1c"
_FRAGMENTS = b"\x1d"
_FRAGMENT = b"\x1e"
_FRAGMENT_TEXT = _FRAGMENT.decode()
HOUR_US = 3_600_000_000
OLDEST_TEST_US = OLDEST_TEST // timedelta(microseconds=1)

STATIC: tuple[str, ...] = (
    '"declaration":null',
    '"test":null',
    '"origin_risk_level":null',
    *(f'"origin_risk_level":{level}' for level in range(1, 5)),
    '"symptoms":[]',
    '"contact_with_confirmed_case":false',
    '"contact_with_confirmed_case":true',
    '"stayed_in_high_risk_area":false}',
    '"stayed_in_high_risk_area":true}',
    *(f'"vaccination":{{"status":"{s.value}"' for s in Status),
    *(f'"doses":{n}' for n in range(10)),
    '"protected_from":null',
    '"recovered_until":null}',
    *(f'"verdict":"{v.value}"' for v in Verdict),
    '"reasons":[]',
    *(f'"reasons":["{c}"]' for c in sorted(CONDITIONS)),
)
"""Fragments every citizen may share, never stored (see the module's docstring)."""
_STATIC_INDEX = {f: i for i, f in enumerate(dict.fromkeys(STATIC))}
_STATIC_BYTES = [f.encode() for f in _STATIC_INDEX]
SYMBOLS = bytes(b for b in range(0x20, 0x100) if b not in b":;")
"""The byte naming each fragment: static ones first, then the citizen's own."""
_NUMBER = {symbol: n for n, symbol in enumerate(SYMBOLS)}
_STATIC_SYMBOL = {f: SYMBOLS[n] for f, n in _STATIC_INDEX.items()}
_OWN_SYMBOLS = SYMBOLS[len(_STATIC_INDEX) :]

RiskBook = Mapping[str, Sequence[tuple[int, int]]]
"""Area code (province, or province.district) -> (effective from, level) periods, sorted."""


def split_area(code: str) -> tuple[str, str | None]:
    """(province, province.district or None) of an area code, wards dropped."""
    parts = code.split(".")
    return parts[0], f"{parts[0]}.{parts[1]}" if len(parts) > 1 else None


def level_at(risk: RiskBook, area: str, at: int) -> int | None:
    """The level in force: the district's own if it has one, else its province's."""
    province, district = split_area(area)
    for candidate in (district, province):
        if candidate is None:
            continue
        current = None
        for effective, level in risk.get(candidate, ()):
            if effective <= at:
                current = level
        if current is not None:
            return current
    return None


def risk_moments(risk: RiskBook, area: str) -> list[int]:
    province, district = split_area(area)
    areas = (province,) if district is None else (province, district)
    return [effective for a in areas for effective, _ in risk.get(a, ())]


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ",".join([_json(item) for item in value]) + "]"
    return _COMPACT_JSON(value)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _iso(micros: int) -> str:
    return from_us(micros).isoformat().replace("+00:00", "Z")


def _status(state: CitizenState, at: int, catalogue: Catalogue) -> VaccinationStatus | None:
    """The status at a moment; None, which documents show as unvaccinated (what the
    status of an empty record says), when there is no vaccination record."""
    return state.status_at(at, catalogue) if state.has_vaccination_record else None


def _status_moments(state: CitizenState, catalogue: Catalogue) -> list[int]:
    moments = [d.given_at for d in state.doses]
    final = _status(state, max([state.seen, *moments]), catalogue)
    if final is not None:
        if final.protected_from is not None:
            moments.append(day_start_us(final.protected_from))
        if final.recovered_until is not None:
            moments.append(day_start_us(final.recovered_until + timedelta(days=1)))
    return moments


_FactsKey = tuple[bool, bool, bool, bool, bool, int | None, bool, bool]
"""The fields of :class:`Facts`, in order."""
_DECISIONS: dict[int, tuple[Policy, dict[_FactsKey, tuple[str, str]]]] = {}
"""Per policy (by identity): the verdict and reasons fragments of the facts seen so far;
at most 2^7 x 5 facts each."""
_VACCINATION: dict[tuple[str, int, date | None, date | None], tuple[str, ...]] = {}
"""The vaccination fragments of the statuses seen so far: many citizens share one."""
_CACHE_LIMIT = 100_000
_UNVACCINATED = (
    '"vaccination":{"status":"unvaccinated"',
    '"doses":0',
    '"protected_from":null',
    '"recovered_until":null}',
)


def _decided(policy: Policy, facts: _FactsKey) -> tuple[str, str]:
    """The verdict and reasons fragments of `decide`."""
    known = _DECISIONS.get(id(policy))
    if known is None or known[0] is not policy:
        known = _DECISIONS[id(policy)] = (policy, {})
    fragments = known[1].get(facts)
    if fragments is None:
        verdict, reasons = decide(policy, Facts(*facts))
        fragments = f'"verdict":"{verdict.value}"', f'"reasons":{_json(list(reasons))}'
        known[1][facts] = fragments
    return fragments


def _vaccination(status: VaccinationStatus | None) -> tuple[str, ...]:
    if status is None:
        return _UNVACCINATED
    key = (status.status.value, status.doses, status.protected_from, status.recovered_until)
    fragments = _VACCINATION.get(key)
    if fragments is None:
        if len(_VACCINATION) >= _CACHE_LIMIT:
            _VACCINATION.clear()
        fragments = _VACCINATION[key] = (
            f'"vaccination":{{"status":"{key[0]}"',
            f'"doses":{key[1]}',
            f'"protected_from":{_json(_day(key[2]))}',
            f'"recovered_until":{_json(_day(key[3]))}}}',
        )
    return fragments


def _document(
    state: CitizenState,
    at: int,
    status: VaccinationStatus | None,
    risk: RiskBook,
    policy: Policy,
) -> list[str]:
    """The fragments of the document in force at `at`."""
    dob = state.date_of_birth
    fragments = [
        f'"name":{_json(state.masked_name)}',
        f'"birth_year":{int(dob[:4])}' if dob else '"birth_year":null',
    ]
    d = state.declaration
    valid = d is not None and d.declared_at <= at < d.valid_until
    level = None
    if d is not None and valid:
        level = level_at(risk, d.origin, at)
        fragments += [
            f'"declaration":{{"id":"{d.declaration_id}"',
            f'"origin":{_json(d.origin)}',
            f'"origin_risk_level":{_json(level)}',
            f'"destination":{_json(d.destination)}',
            f'"travel_date":"{d.travel_date}"',
            f'"valid_until":"{_iso(d.valid_until)}"',
            f'"symptoms":{_json(d.symptoms)}',
            f'"contact_with_confirmed_case":{_json(d.contact)}',
            f'"stayed_in_high_risk_area":{_json(d.stayed)}}}',
        ]
    else:
        fragments.append('"declaration":null')
    fragments += _vaccination(status)
    t = state.test
    if t is None:
        fragments.append('"test":null')
    else:
        test = {"kind": t.kind, "outcome": t.outcome, "sampled_at": _iso(t.sampled_at)}
        fragments.append(f'"test":{_COMPACT_JSON(test)}')
    recent_negative = (
        t is not None
        and t.outcome == "negative"
        and t.sampled_at <= at < t.sampled_at + int(policy.negative_test_hours * HOUR_US)
    )
    facts: _FactsKey = (
        valid,
        bool(d and d.symptoms),
        bool(d and d.contact),
        bool(d and d.stayed),
        bool(
            d and t and t.outcome == "positive" and t.sampled_at >= d.declared_at - OLDEST_TEST_US
        ),
        level,
        status is not None and status.protected_on(local_day(from_us(at))),
        recent_negative,
    )
    fragments += _decided(policy, facts)
    return fragments


def timeline(state: CitizenState, risk: RiskBook, policy: Policy, catalogue: Catalogue) -> bytes:
    """The stored timeline of a citizen's checkpoint document; empty when there is none."""
    if state.gone or state.masked_name is None:
        return b""
    moments = set(_status_moments(state, catalogue))
    d = state.declaration
    if d is not None:
        moments |= {d.declared_at, d.valid_until, *risk_moments(risk, d.origin)}
    if state.test is not None and state.test.outcome == "negative":
        moments.add(state.test.sampled_at + int(policy.negative_test_hours * HOUR_US))
    floor = max(state.seen, d.declared_at if d else 0)
    starts = [floor, *sorted(m for m in moments if m > floor)]
    periods: list[tuple[int, list[str]]] = []
    for start in starts:
        fragments = _document(state, start, _status(state, start, catalogue), risk, policy)
        if not periods or periods[-1][1] != fragments:
            periods.append((0 if not periods else start, fragments))
    return encode(periods)


def encode(periods: Iterable[tuple[int, list[str]]]) -> bytes:
    own: dict[str, int] = {}
    header = []
    for start, fragments in periods:
        symbols = [
            s
            if (s := _STATIC_SYMBOL.get(f)) is not None
            else _OWN_SYMBOLS[own.setdefault(f, len(own))]
            for f in fragments
        ]
        header.append(f"{start}:".encode() + bytes(symbols))
    body = _FRAGMENT_TEXT.join(own).encode()
    return b";".join(header) + _FRAGMENTS + body


def pick(value: bytes, now: int) -> bytes | None:
    """The document in force at `now` (microseconds) from a stored value; None if none."""
    end = value.find(TIMELINE_END)
    stored = value if end < 0 else value[:end]
    if not stored:
        return None
    head, _, body = stored.partition(_FRAGMENTS)
    chosen = b""
    for period in head.split(b";"):
        start, _, symbols = period.partition(b":")
        if int(start) > now:
            break
        chosen = symbols
    fragments = _STATIC_BYTES + body.split(_FRAGMENT)
    return b"{" + b",".join([fragments[_NUMBER[s]] for s in chosen]) + b"}"


def stored_name(value: bytes) -> str | None:
    """The masked name in a stored timeline (its first own fragment), None if none."""
    stored = value.partition(TIMELINE_END)[0]
    if not stored:
        return None
    first = stored.partition(_FRAGMENTS)[2].partition(_FRAGMENT)[0]
    name: str | None = json.loads(first.removeprefix(b'"name":'))
    return name


def periods(value: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Every period of a stored value, decoded (for tests and tools, not the hot path)."""
    stored = value.partition(TIMELINE_END)[0]
    if not stored:
        return []
    head = stored.partition(_FRAGMENTS)[0]
    out = []
    for period in head.split(b";"):
        start = int(period.partition(b":")[0])
        document = pick(stored, start)
        if document is not None:
            out.append((start, json.loads(document)))
    return out
