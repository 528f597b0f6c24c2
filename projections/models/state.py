"""What the read models keep about one citizen, in a compact JSON form.

The stored form is positional: JSON arrays whose trailing empty values (null, 0, [])
are left out, dates as day numbers since 1970-01-01, a declaration's end as its length.
The masked name is kept here only for those who have no checkpoint document (the
gone): the document holds everyone else's (see :func:`.checkpoint.stored_name`).

Each context fills its own part from its own events only, so the state after a set of
events does not depend on how the contexts' events interleave. The read models are
pure functions of this state (and of the area risk levels), which is what makes an
incremental build equal a rebuild.

Times are integer microseconds since the epoch (UTC): verdict timing is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from domain.clock import VIETNAM, local_day
from domain.doses import AdverseEvent, Dose, DoseKind, InjectionSite, Screening, ScreeningOutcome
from domain.doses import Severity as DoseSeverity
from domain.status import VaccinationStatus, vaccination_status
from domain.vaccination import VaccinationRecord
from domain.vaccines import Catalogue

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_MICROSECOND = timedelta(microseconds=1)


def us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (moment - EPOCH) // _MICROSECOND


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(0, 0, micros)


_EPOCH_DAY = date(1970, 1, 1).toordinal()


def to_days(iso: str | None) -> int | None:
    return None if iso is None else date.fromisoformat(iso).toordinal() - _EPOCH_DAY


def from_days(days: int | None) -> str | None:
    return None if days is None else date.fromordinal(days + _EPOCH_DAY).isoformat()


def trimmed(values: list[Any]) -> list[Any]:
    """`values` without its trailing empty values (decoders supply them back)."""
    end = len(values)
    while end and values[end - 1] in (None, 0, []):
        end -= 1
    return values[:end]


def _padded(raw: list[Any], length: int) -> list[Any]:
    return raw + [None] * (length - len(raw))


@lru_cache(maxsize=4096)
def day_start_us(day: date) -> int:
    """The first microsecond of a local (Asia/Ho_Chi_Minh) day (many citizens share
    the days asked: when a dose is due, when protection starts)."""
    return us(datetime(day.year, day.month, day.day, tzinfo=VIETNAM))


@dataclass(slots=True)
class DeclarationState:
    declaration_id: str
    origin: str
    destination: str
    travel_date: str
    declared_at: int
    valid_until: int
    symptoms: list[str]
    contact: bool
    stayed: bool
    checkpoint: str | None

    def encode(self) -> list[Any]:
        return trimmed(
            [
                self.declaration_id,
                self.origin,
                self.destination,
                to_days(self.travel_date),
                self.declared_at,
                self.valid_until - self.declared_at,
                self.checkpoint,
                self.symptoms,
                int(self.contact),
                int(self.stayed),
            ]
        )

    @classmethod
    def decode(cls, raw: list[Any]) -> DeclarationState:
        i, o, d, t, at, length, checkpoint, symptoms, contact, stayed = _padded(raw, 10)
        return cls(
            i,
            o,
            d,
            from_days(t) or "",
            at,
            at + length,
            symptoms or [],
            bool(contact),
            bool(stayed),
            checkpoint,
        )


@dataclass(slots=True)
class TestState:
    kind: str
    outcome: str
    sampled_at: int


@dataclass(slots=True)
class DoseState:
    dose_id: str
    product: str
    given_at: int
    booster: bool
    unit: str
    severe: bool = False

    def encode(self) -> list[Any]:
        return trimmed(
            [
                self.dose_id,
                self.product,
                self.given_at,
                self.unit,
                int(self.booster),
                int(self.severe),
            ]
        )

    @classmethod
    def decode(cls, raw: list[Any]) -> DoseState:
        dose_id, product, given_at, unit, booster, severe = _padded(raw, 6)
        return cls(dose_id, product, given_at, bool(booster), unit, bool(severe))


@dataclass(slots=True)
class ScreeningState:
    outcome: str
    screened_at: int
    unit: str
    postponed_until: str | None


def _screening(raw: list[Any]) -> ScreeningState:
    outcome, screened_at, unit, postponed = _padded(raw, 4)
    return ScreeningState(outcome, screened_at, unit, from_days(postponed))


_DOSE_IDS = tuple(UUID(int=i + 1) for i in range(16))


def _dose_id(index: int) -> UUID:
    """The id a kept dose has in :meth:`CitizenState.as_record`: its position's."""
    return _DOSE_IDS[index] if index < len(_DOSE_IDS) else UUID(int=index + 1)


def _kept_dose(index: int, kept: DoseState) -> Dose:
    """The `Dose` a kept dose stands for in :meth:`CitizenState.as_record`.

    Made without the frozen dataclass's ``__init__``, which sets each field through
    ``object.__setattr__`` (more than twice as slow); a `Dose` checks nothing there.
    """
    dose: Dose = object.__new__(Dose)
    dose.__dict__.update(
        dose_id=_dose_id(index),
        product=kept.product,
        lot="",
        given_at=from_us(kept.given_at),
        unit=kept.unit,
        vaccinator="",
        site=InjectionSite.LEFT_ARM,
        kind=DoseKind.BOOSTER if kept.booster else DoseKind.PRIMARY,
        deviations=(),
        override_reason=None,
    )
    return dose


@dataclass(slots=True)
class _StatusMemo:
    """What :meth:`CitizenState.status_at` keeps until the state changes."""

    record: VaccinationRecord
    statuses: dict[tuple[int, bool, date | bool], VaccinationStatus] = field(default_factory=dict)
    protected_from: dict[tuple[int, bool], date | None] = field(default_factory=dict)
    """Per (doses, screened) given by a moment: the day protection starts."""
    by_moment: dict[int, VaccinationStatus] = field(default_factory=dict)


@dataclass(slots=True)
class CitizenState:
    """One citizen's part of every context, as the read models need it."""

    masked_name: str | None = None
    date_of_birth: str | None = None
    province: str | None = None
    """Of residence: all the read models need of it."""
    gone: bool = False
    """Died or moved to another ID number: no checkpoint document, no eligibility."""
    declaration: DeclarationState | None = None
    test: TestState | None = None
    doses: list[DoseState] = field(default_factory=list)
    screening: ScreeningState | None = None
    registered: tuple[str, int] | None = None
    recovered_on: str | None = None
    record_moved: bool = False
    seen: int = 0
    """The latest event time applied, over every context."""
    _memo: _StatusMemo | None = field(default=None, repr=False, compare=False)

    def encode(self) -> bytes:
        """The stored state; the masked name only when there is no document to hold it."""
        t, sc = self.test, self.screening
        out = [
            self.seen,
            to_days(self.date_of_birth),
            self.province,
            self.declaration.encode() if self.declaration else None,
            [d.encode() for d in self.doses],
            list(self.registered) if self.registered else None,
            [t.kind, t.outcome, t.sampled_at] if t else None,
            trimmed([sc.outcome, sc.screened_at, sc.unit, to_days(sc.postponed_until)])
            if sc
            else None,
            to_days(self.recovered_on),
            int(self.gone),
            int(self.record_moved),
            self.masked_name if self.gone else None,
        ]
        return _COMPACT_JSON(trimmed(out)).encode()

    @classmethod
    def decode(cls, raw: bytes | None, masked_name: str | None = None) -> CitizenState:
        """The state from its stored form and the name its document holds, if any."""
        if not raw:
            return cls(masked_name=masked_name)
        seen, dob, province, d, doses, registered, t, sc, recovered, gone, moved, name = _padded(
            json.loads(raw), 12
        )
        return cls(
            masked_name=masked_name if name is None else name,
            date_of_birth=from_days(dob),
            province=province,
            gone=bool(gone),
            declaration=DeclarationState.decode(d) if d else None,
            test=TestState(*t) if t else None,
            doses=[DoseState.decode(x) for x in doses or ()],
            screening=_screening(sc) if sc else None,
            registered=(registered[0], registered[1]) if registered else None,
            recovered_on=from_days(recovered),
            record_moved=bool(moved),
            seen=int(seen or 0),
        )

    def population_part(self) -> tuple[Any, ...]:
        """What population events fill, in a form :mod:`marshal` carries."""
        return (self.masked_name, self.date_of_birth, self.province, self.gone)

    def take_population_part(self, part: tuple[Any, ...]) -> None:
        self.masked_name, self.date_of_birth, self.province, self.gone = part

    def immunization_part(self) -> tuple[Any, ...]:
        """What immunization events fill, in a form :mod:`marshal` carries."""
        sc = self.screening
        return (
            self.registered,
            None if sc is None else (sc.outcome, sc.screened_at, sc.unit, sc.postponed_until),
            [(d.dose_id, d.product, d.given_at, d.booster, d.unit, d.severe) for d in self.doses],
            self.recovered_on,
            self.record_moved,
        )

    def take_immunization_part(self, part: tuple[Any, ...]) -> None:
        self.registered, screening, doses, self.recovered_on, self.record_moved = part
        self.screening = None if screening is None else ScreeningState(*screening)
        self.doses = [DoseState(*dose) for dose in doses]
        self.changed()

    @property
    def dob(self) -> date | None:
        return date.fromisoformat(self.date_of_birth) if self.date_of_birth else None

    @property
    def has_vaccination_record(self) -> bool:
        return bool(self.doses or self.screening or self.registered or self.recovered_on)

    def status_at(self, at: int, catalogue: Catalogue) -> VaccinationStatus | None:
        """`vaccination_status` of the kept record at a moment; None without a birth date.

        Memoised per state: the status depends on the doses and screening up to the
        moment, and on its day only through the day a primary dose is first due (no
        primary dose yet) or whether protection has started; so with a primary dose,
        days on the same side of `protected_from` share one computation.
        """
        memo = self._memo
        if memo is not None and at in memo.by_moment:
            return memo.by_moment[at]
        dob = self.dob
        if dob is None:
            return None
        if memo is None:
            memo = self._memo = _StatusMemo(self.as_record())
        moment = from_us(at)
        day = local_day(moment)
        given, primary = 0, False
        for d in self.doses:
            if d.given_at <= at:
                given += 1
                primary = primary or not d.booster
        base = (given, self.screening is not None and self.screening.screened_at <= at)
        key: tuple[int, bool, date | bool] = (*base, day)
        if primary and base in memo.protected_from:
            protected_from = memo.protected_from[base]
            key = (*base, protected_from is not None and day >= protected_from)
        found = memo.statuses.get(key)
        if found is None:
            found = vaccination_status(memo.record, dob, moment, catalogue)
            if primary:
                protected_from = memo.protected_from[base] = found.protected_from
                key = (*base, protected_from is not None and day >= protected_from)
            memo.statuses[key] = found
        memo.by_moment[at] = found
        return found

    def changed(self) -> None:
        """Forget the statuses computed before a change."""
        self._memo = None

    def as_record(self) -> VaccinationRecord:
        """The kept part of the vaccination record, for the domain's pure status function.

        Only what `vaccination_status` reads is filled in: valid doses (their lot,
        vaccinator and site are not kept), the latest screening, severe reactions and
        the recovery.
        """
        record: VaccinationRecord = object.__new__(VaccinationRecord)
        doses = [_kept_dose(i, d) for i, d in enumerate(self.doses)]
        record.doses = doses
        record.voided = set()
        s = self.screening
        record.screenings = (
            [
                Screening(
                    ScreeningOutcome(s.outcome),
                    from_us(s.screened_at),
                    s.unit,
                    date.fromisoformat(s.postponed_until) if s.postponed_until else None,
                )
            ]
            if s
            else []
        )
        record.adverse_events = [
            AdverseEvent(dose.dose_id, dose.given_at, DoseSeverity.SEVERE, "")
            for dose, kept in zip(doses, self.doses, strict=True)
            if kept.severe
        ]
        record.recovered_on = date.fromisoformat(self.recovered_on) if self.recovered_on else None
        return record
