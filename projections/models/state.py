"""What the read models keep about one citizen, in a compact JSON form.

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
from typing import Any
from uuid import UUID

from domain.clock import VIETNAM, local_day
from domain.doses import AdverseEvent, Dose, DoseKind, InjectionSite, Screening, ScreeningOutcome
from domain.doses import Severity as DoseSeverity
from domain.status import VaccinationStatus, vaccination_status
from domain.vaccination import VaccinationRecord
from domain.vaccines import Catalogue

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def day_start_us(day: date) -> int:
    """The first microsecond of a local (Asia/Ho_Chi_Minh) day."""
    return us(datetime(day.year, day.month, day.day, tzinfo=VIETNAM))


@dataclass
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
        return [
            self.declaration_id,
            self.origin,
            self.destination,
            self.travel_date,
            self.declared_at,
            self.valid_until,
            self.symptoms,
            int(self.contact),
            int(self.stayed),
            self.checkpoint,
        ]

    @classmethod
    def decode(cls, raw: list[Any]) -> DeclarationState:
        i, o, d, t, at, until, symptoms, contact, stayed, checkpoint = raw
        return cls(i, o, d, t, at, until, symptoms, bool(contact), bool(stayed), checkpoint)


@dataclass
class TestState:
    kind: str
    outcome: str
    sampled_at: int


@dataclass
class DoseState:
    dose_id: str
    product: str
    given_at: int
    booster: bool
    unit: str
    severe: bool = False

    def encode(self) -> list[Any]:
        return [self.dose_id, self.product, self.given_at, int(self.booster), self.unit] + (
            [1] if self.severe else []
        )

    @classmethod
    def decode(cls, raw: list[Any]) -> DoseState:
        return cls(raw[0], raw[1], raw[2], bool(raw[3]), raw[4], len(raw) > 5 and bool(raw[5]))


@dataclass
class ScreeningState:
    outcome: str
    screened_at: int
    unit: str
    postponed_until: str | None


@dataclass
class CitizenState:
    """One citizen's part of every context, as the read models need it."""

    masked_name: str | None = None
    date_of_birth: str | None = None
    residence: str | None = None
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
    _statuses: dict[tuple[int, bool, date], VaccinationStatus] = field(
        default_factory=dict, repr=False, compare=False
    )

    def encode(self) -> bytes:
        out: dict[str, Any] = {}
        if self.masked_name is not None:
            out["n"] = self.masked_name
        if self.date_of_birth is not None:
            out["b"] = self.date_of_birth
        if self.residence is not None:
            out["r"] = self.residence
        if self.gone:
            out["g"] = 1
        if self.declaration is not None:
            out["d"] = self.declaration.encode()
        if self.test is not None:
            out["t"] = [self.test.kind, self.test.outcome, self.test.sampled_at]
        if self.doses:
            out["x"] = [d.encode() for d in self.doses]
        if self.screening is not None:
            s = self.screening
            out["s"] = [s.outcome, s.screened_at, s.unit, s.postponed_until]
        if self.registered is not None:
            out["u"] = list(self.registered)
        if self.recovered_on is not None:
            out["c"] = self.recovered_on
        if self.record_moved:
            out["m"] = 1
        out["w"] = self.seen
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> CitizenState:
        if not raw:
            return cls()
        data = json.loads(raw)
        test = data.get("t")
        screening = data.get("s")
        registered = data.get("u")
        return cls(
            masked_name=data.get("n"),
            date_of_birth=data.get("b"),
            residence=data.get("r"),
            gone=bool(data.get("g")),
            declaration=DeclarationState.decode(data["d"]) if "d" in data else None,
            test=TestState(*test) if test else None,
            doses=[DoseState.decode(d) for d in data.get("x", ())],
            screening=ScreeningState(*screening) if screening else None,
            registered=(registered[0], registered[1]) if registered else None,
            recovered_on=data.get("c"),
            record_moved=bool(data.get("m")),
            seen=int(data.get("w", 0)),
        )

    @property
    def dob(self) -> date | None:
        return date.fromisoformat(self.date_of_birth) if self.date_of_birth else None

    @property
    def has_vaccination_record(self) -> bool:
        return bool(self.doses or self.screening or self.registered or self.recovered_on)

    def status_at(self, at: int, catalogue: Catalogue) -> VaccinationStatus | None:
        """`vaccination_status` of the kept record at a moment; None without a birth date."""
        dob = self.dob
        if dob is None:
            return None
        moment = from_us(at)
        screened = self.screening is not None and self.screening.screened_at <= at
        key = (sum(d.given_at <= at for d in self.doses), screened, local_day(moment))
        found = self._statuses.get(key)
        if found is None:
            found = self._statuses[key] = vaccination_status(
                self.as_record(), dob, moment, catalogue
            )
        return found

    def changed(self) -> None:
        """Forget the statuses computed before a change."""
        self._statuses.clear()

    def as_record(self) -> VaccinationRecord:
        """The kept part of the vaccination record, for the domain's pure status function.

        Only what `vaccination_status` reads is filled in: valid doses (their lot,
        vaccinator and site are not kept), the latest screening, severe reactions and
        the recovery.
        """
        record: VaccinationRecord = object.__new__(VaccinationRecord)
        doses = [
            Dose(
                UUID(int=i + 1),
                d.product,
                "",
                from_us(d.given_at),
                d.unit,
                "",
                InjectionSite.LEFT_ARM,
                DoseKind.BOOSTER if d.booster else DoseKind.PRIMARY,
            )
            for i, d in enumerate(self.doses)
        ]
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
