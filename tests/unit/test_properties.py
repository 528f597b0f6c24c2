"""Properties: aggregates rebuilt from their events (in memory and through the event store)
equal the originals, and random vaccination commands never leave a history that breaks
the schedule rules (checked by an oracle written independently of `dose_rules`)."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.areas import AreaCode
from domain.base import recording_clock
from domain.citizen import Citizen
from domain.clock import VIETNAM, local_day
from domain.dose_rules import DoseContext
from domain.doses import Dose, DoseKind, Screening, ScreeningOutcome, Severity
from domain.errors import DomainError
from domain.identity import NationalId, Passport, Sex
from domain.status import vaccination_status
from domain.vaccination import VaccinationRecord
from domain.vaccines import CATALOGUE
from infrastructure.bootstrap import Registry, bootstrap
from infrastructure.settings import load_settings
from tests.unit.domain_builders import (
    ADMIN,
    STAFF,
    adverse,
    birth_dates,
    dose,
    dose_kinds,
    national_id,
    products,
    provinces,
    screening,
    severities,
    sexes,
    vietnamese_names,
)

START = datetime(2021, 7, 1, 1, 0, tzinfo=UTC)
HORIZON = START + timedelta(days=900)
DAY = timedelta(days=1)

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data_dir = tmp_path_factory.mktemp("vaxreg")
    registry = bootstrap(load_settings({"VAXREG_DATA_DIR": str(data_dir)}))
    yield registry
    registry.close()


# Vaccination record commands, as data


@dataclass(frozen=True)
class Administer:
    product: str
    kind: DoseKind
    day: int
    hour: int
    local_time: bool
    override: bool


@dataclass(frozen=True)
class Screen:
    outcome: ScreeningOutcome
    day: int
    postpone_days: int


@dataclass(frozen=True)
class Report:
    index: int
    severity: Severity
    hours: int


@dataclass(frozen=True)
class Correct:
    index: int
    shift_days: int
    product: str | None
    override: bool


@dataclass(frozen=True)
class Void:
    index: int


@dataclass(frozen=True)
class Recover:
    day: int


@dataclass(frozen=True)
class Register:
    group: int | None


@dataclass(frozen=True)
class Receive:
    product: str
    day: int
    outcome: ScreeningOutcome


@dataclass(frozen=True)
class Move:
    serial: int


Command = Administer | Screen | Report | Correct | Void | Recover | Register | Receive | Move

days = st.integers(0, 800)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        Administer, products, dose_kinds, days, st.integers(0, 23), st.booleans(), st.booleans()
    ),
    st.builds(Screen, st.sampled_from(list(ScreeningOutcome)), days, st.integers(1, 30)),
    st.builds(Report, st.integers(0, 20), severities, st.integers(0, 72)),
    st.builds(
        Correct, st.integers(0, 20), st.integers(-60, 60), st.none() | products, st.booleans()
    ),
    st.builds(Void, st.integers(0, 20)),
    st.builds(Recover, days),
    st.builds(Register, st.none() | st.integers(1, 16)),
    st.builds(Receive, products, days, st.sampled_from(list(ScreeningOutcome))),
    st.builds(Move, st.integers(0, 999_999)),
)


def moment(day: int, hour: int = 3, local_time: bool = False) -> datetime:
    at = START + day * DAY + hour * timedelta(hours=1)
    return at.astimezone(VIETNAM) if local_time else at


def pick(record: VaccinationRecord, index: int) -> Dose | None:
    valid = record.valid_doses
    return valid[index % len(valid)] if valid else None


def apply(record: VaccinationRecord, command: Command, born: date) -> None:
    """Run one command on the record; a refused command is simply not recorded."""
    ctx = _ctx(record, born)
    try:
        match command:
            case Administer(product, kind, day, hour, local_time, override):
                given = dose(
                    product,
                    moment(day, hour, local_time),
                    kind,
                    "campaign order" if override else None,
                )
                record.administer(given, ctx, None, STAFF)
            case Screen(outcome, day, postpone_days):
                at = moment(day)
                until = (
                    local_day(at) + postpone_days * DAY
                    if outcome is ScreeningOutcome.POSTPONED
                    else None
                )
                record.screen(screening(outcome, at, until), STAFF)
            case Report(index, severity, hours):
                target = pick(record, index)
                if target is not None:
                    onset = min(target.given_at + hours * timedelta(hours=1), HORIZON)
                    record.report_adverse_event(adverse(target, severity, onset), HORIZON, STAFF)
            case Correct(index, shift_days, product, override):
                target = pick(record, index)
                if target is not None:
                    corrected = replace(
                        target,
                        given_at=target.given_at + shift_days * DAY,
                        product=product or target.product,
                        deviations=(),
                        override_reason="register says so" if override else None,
                    )
                    record.correct_dose(corrected, "entered wrongly", ctx, None, STAFF)
            case Void(index):
                target = pick(record, index)
                if target is not None:
                    record.void_dose(target.dose_id, "wrong person", STAFF)
            case Recover(day):
                record.record_recovery(local_day(moment(day)), local_day(HORIZON), STAFF)
            case Register(group):
                record.register("79-HCM-001", group, STAFF)
            case Receive(product, day, outcome):
                source = VaccinationRecord(uuid4(), national_id(born, Sex.MALE, "001"), STAFF)
                source.administer(dose(product, moment(day)), _ctx(source, born), None, STAFF)
                postponed = outcome is ScreeningOutcome.POSTPONED
                until = local_day(moment(day)) + DAY if postponed else None
                source.screen(screening(outcome, moment(day), until), STAFF)
                record.receive_history(source, "wrong ID number", STAFF)
            case Move(serial):
                record.move_to(national_id(born, Sex.MALE, "092", f"{serial:06d}"), "moved", STAFF)
    except DomainError:
        pass


def _ctx(record: VaccinationRecord, born: date) -> DoseContext:
    return DoseContext(born, record.screenings, record.adverse_events, CATALOGUE, HORIZON)


def record_state(record: VaccinationRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "version": record.version,
        "created_on": record.created_on,
        "modified_on": record.modified_on,
        "person": record.person,
        "registrations": record.registrations,
        "screenings": record.screenings,
        "doses": record.doses,
        "voided": record.voided,
        "adverse_events": record.adverse_events,
        "recovered_on": record.recovered_on,
        "moved_to": record.moved_to,
        "received_from": record.received_from,
    }


def moments(record: VaccinationRecord) -> list[datetime]:
    found = [START, HORIZON]
    for d in record.doses:
        found += [d.given_at, d.given_at + 14 * DAY, d.given_at + 91 * DAY]
    return found


def rebuild(events: Sequence[Any]) -> Any:
    return functools.reduce(lambda aggregate, event: event.mutate(aggregate), events, None)


def build_record(born: date, script: list[Command]) -> VaccinationRecord:
    clock = iter(START + n * timedelta(minutes=7) for n in range(10_000))
    with recording_clock(lambda: next(clock)):
        record = VaccinationRecord(uuid4(), national_id(born, Sex.MALE), STAFF)
        for command in script:
            apply(record, command, born)
    return record


@FAST
@given(born=birth_dates, script=st.lists(commands, max_size=14))
def test_a_vaccination_record_rebuilt_from_its_events_is_the_same(
    registry: Registry, born: date, script: list[Command]
) -> None:
    app = registry.immunization
    record = build_record(born, script)
    events = record.collect_events()
    in_memory = rebuild(events)
    mapper = app.mapper
    transcoded = rebuild([mapper.to_domain_event(mapper.to_stored_event(e)) for e in events])
    app.events.put(events)
    stored: object = app.repository.get(record.id)
    for copy in (in_memory, transcoded, stored):
        assert isinstance(copy, VaccinationRecord)
        assert record_state(copy) == record_state(record)
        assert all(type(d.deviations) is tuple for d in copy.doses)
        for at in moments(record):
            assert vaccination_status(copy, born, at, CATALOGUE) == vaccination_status(
                record, born, at, CATALOGUE
            )


# Citizens


@dataclass(frozen=True)
class CitizenStep:
    action: str
    text: str
    number: int


citizen_steps = st.builds(
    CitizenStep,
    st.sampled_from(["residence", "contact", "name", "birth", "death", "receive", "move"]),
    vietnamese_names,
    st.integers(0, 999_999),
)


def citizen_state(citizen: Citizen) -> dict[str, Any]:
    return {
        "id": citizen.id,
        "version": citizen.version,
        "created_on": citizen.created_on,
        "modified_on": citizen.modified_on,
        **{
            name: getattr(citizen, name)
            for name in (
                "person",
                "full_name",
                "date_of_birth",
                "sex",
                "residence",
                "phone",
                "status",
                "died_on",
                "moved_to",
                "merged_from",
            )
        },
    }


def apply_citizen(citizen: Citizen, step: CitizenStep, today: date) -> None:
    n = step.number
    try:
        match step.action:
            case "residence":
                citizen.change_residence(
                    AreaCode("079", f"{760 + n % 5}", f"{26700 + n % 50}"), ADMIN
                )
            case "contact":
                citizen.change_contact(f"09{n:08d}", ADMIN)
            case "name":
                citizen.correct_record("typo", ADMIN, today, full_name=step.text)
            case "birth":
                day = citizen.date_of_birth.replace(month=1 + n % 12, day=1 + n % 28)
                citizen.correct_record("register", ADMIN, today, date_of_birth=day)
            case "death":
                citizen.record_death(today - (n % 30) * DAY, ADMIN, today)
            case "receive":
                source = Passport(f"P{n:06d}", "FRA") if n % 2 else NationalId(f"001190{n:06d}")
                citizen.receive(source, "duplicate", ADMIN)
            case "move":
                citizen.move_to(NationalId(f"092190{n:06d}"), "wrong number", ADMIN)
    except DomainError:
        pass


@FAST
@given(
    name=vietnamese_names,
    born=birth_dates,
    sex=sexes,
    province=provinces,
    steps=st.lists(citizen_steps, max_size=10),
)
def test_a_citizen_rebuilt_from_its_events_is_the_same(
    registry: Registry,
    name: str,
    born: date,
    sex: Sex,
    province: str,
    steps: list[CitizenStep],
) -> None:
    app = registry.population
    today = date(2021, 8, 1)
    clock = iter(START + n * timedelta(minutes=3) for n in range(1000))
    with recording_clock(lambda: next(clock)):
        citizen = Citizen.register(
            uuid4(),
            national_id(born, sex, province),
            name,
            born,
            sex,
            AreaCode(province),
            None,
            today,
            ADMIN,
        )
        for step in steps:
            apply_citizen(citizen, step, today)
    events = citizen.collect_events()
    transcoded = [app.mapper.to_domain_event(app.mapper.to_stored_event(e)) for e in events]
    app.events.put(events)
    for copy in (rebuild(events), rebuild(transcoded), app.repository.get(citizen.id)):
        assert isinstance(copy, Citizen)
        assert citizen_state(copy) == citizen_state(citizen)


# The schedule oracle, independent of dose_rules


def schedule_problems(doses: Sequence[Dose], born: date) -> list[str]:
    """What is wrong with a history of valid doses, by the catalogue's numbers alone."""
    problems: list[str] = []
    ordered = sorted(doses, key=lambda d: d.given_at)
    primary = [d for d in ordered if d.kind is DoseKind.PRIMARY]
    boosters = [d for d in ordered if d.kind is DoseKind.BOOSTER]
    if primary and len(primary) > CATALOGUE.products[primary[0].product].primary_doses:
        problems.append(f"{len(primary)} primary doses of a {primary[0].product} series")
    for before, after in itertools.pairwise(primary):
        gap = (local_day(after.given_at) - local_day(before.given_at)).days
        if gap < CATALOGUE.products[before.product].minimum_interval_days:
            problems.append(f"{after.product} {gap} days after {before.product}")
        if before.product != after.product and (
            before.product not in CATALOGUE.products[after.product].may_follow
        ):
            problems.append(f"{after.product} may not follow {before.product}")
    if len(boosters) > 2:
        problems.append(f"{len(boosters)} boosters")
    for position, one in enumerate(ordered):
        if one.kind is DoseKind.BOOSTER and position > 0:
            previous = ordered[position - 1]
            gap = (local_day(one.given_at) - local_day(previous.given_at)).days
            if gap < 90:
                problems.append(f"booster {gap} days after the previous dose")
        age_years = CATALOGUE.products[one.product].minimum_age_years
        day = local_day(one.given_at)
        age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        if age < age_years:
            problems.append(f"{one.product} at age {age}")
    seen: set[tuple[str, date]] = set()
    for one in ordered:
        key = (one.product, local_day(one.given_at))
        if key in seen:
            problems.append(f"two doses of {one.product} on {key[1]}")
        seen.add(key)
    return problems


def test_the_oracle_sees_the_rules() -> None:
    born = date(1990, 1, 1)
    t = START
    assert schedule_problems([dose("vaxzevria", t), dose("vaxzevria", t + 28 * DAY)], born) == []
    assert schedule_problems([dose("vaxzevria", t), dose("vaxzevria", t + 27 * DAY)], born)
    assert schedule_problems([dose("comirnaty", t), dose("vaxzevria", t + 60 * DAY)], born)
    assert schedule_problems([dose("janssen", t), dose("janssen", t + 60 * DAY)], born)
    assert schedule_problems(
        [dose("janssen", t), dose("comirnaty", t + 89 * DAY, DoseKind.BOOSTER)], born
    )
    assert schedule_problems([dose("vaxzevria", t)], date(2004, 1, 1))
    assert schedule_problems([dose("comirnaty", t, DoseKind.BOOSTER)] * 2, born)


# Weighted towards what makes long histories: adults, the common products, primary doses.
common_products = st.sampled_from(
    ["vaxzevria"] * 4 + ["comirnaty"] * 4 + ["spikevax"] * 2 + sorted(CATALOGUE.products)
)
common_kinds = st.sampled_from([DoseKind.PRIMARY] * 2 + [DoseKind.BOOSTER])
lot_problems = st.sampled_from([None] * 9 + ["lot L1 expired on 2021-01-01"])
screening_outcomes = st.sampled_from([ScreeningOutcome.ELIGIBLE] * 4 + list(ScreeningOutcome))
machine_births = st.one_of(
    st.dates(min_value=date(1950, 1, 1), max_value=date(2000, 12, 31)),
    st.dates(min_value=date(2003, 1, 1), max_value=date(2010, 12, 31)),
)


class VaccinationMachine(RuleBasedStateMachine):
    """Random commands without override reasons; refused ones leave the record as it was."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.born = date(1990, 1, 1)
        self.record = VaccinationRecord(uuid4(), national_id(self.born, Sex.MALE), STAFF)

    @initialize(born=machine_births)
    def open(self, born: date) -> None:
        self.born = born
        self.record = VaccinationRecord(uuid4(), national_id(born, Sex.MALE), STAFF)

    def ctx(self) -> DoseContext:
        return DoseContext(
            self.born, self.record.screenings, self.record.adverse_events, CATALOGUE, self.now
        )

    def attempt(self, command: Any) -> None:
        with recording_clock(lambda: self.now), contextlib.suppress(DomainError):
            command()

    @rule(days=st.integers(0, 120), hours=st.integers(0, 23))
    def advance(self, days: int, hours: int) -> None:
        self.now += days * DAY + hours * timedelta(hours=1)

    @rule(
        product=common_products,
        kind=common_kinds,
        back_hours=st.integers(0, 24 * 45),
        lot_problem=lot_problems,
    )
    def administer(
        self, product: str, kind: DoseKind, back_hours: int, lot_problem: str | None
    ) -> None:
        given_at = self.now - back_hours * timedelta(hours=1)
        given = dose(product, given_at, kind)
        before = list(self.record.doses)
        self.attempt(lambda: self.record.administer(given, self.ctx(), lot_problem, STAFF))
        if lot_problem is not None:
            assert self.record.doses == before

    @rule(outcome=screening_outcomes, days=st.integers(1, 30))
    def screen(self, outcome: ScreeningOutcome, days: int) -> None:
        postponed = outcome is ScreeningOutcome.POSTPONED
        until = local_day(self.now) + days * DAY if postponed else None
        result = Screening(outcome, self.now, "79-HCM-001", until)
        self.attempt(lambda: self.record.screen(result, STAFF))

    @precondition(lambda self: bool(self.record.valid_doses))
    @rule(index=st.integers(0, 10), severity=severities, hours=st.integers(0, 96))
    def report(self, index: int, severity: Severity, hours: int) -> None:
        target = pick(self.record, index)
        assert target is not None
        onset = min(target.given_at + hours * timedelta(hours=1), self.now)
        report = adverse(target, severity, onset)
        self.attempt(lambda: self.record.report_adverse_event(report, self.now, STAFF))

    @precondition(lambda self: bool(self.record.valid_doses))
    @rule(
        index=st.integers(0, 10),
        shift=st.integers(-60, 60),
        product=st.none() | products,
        kind=st.none() | dose_kinds,
    )
    def correct(self, index: int, shift: int, product: str | None, kind: DoseKind | None) -> None:
        target = pick(self.record, index)
        assert target is not None
        corrected = replace(
            target,
            given_at=target.given_at + shift * DAY,
            product=product or target.product,
            kind=kind or target.kind,
        )
        self.attempt(
            lambda: self.record.correct_dose(corrected, "entered wrongly", self.ctx(), None, STAFF)
        )

    @precondition(lambda self: bool(self.record.valid_doses))
    @rule(index=st.integers(0, 10))
    def void(self, index: int) -> None:
        target = pick(self.record, index)
        assert target is not None
        self.attempt(lambda: self.record.void_dose(target.dose_id, "wrong person", STAFF))

    @rule(days_ago=st.integers(0, 60))
    def recover(self, days_ago: int) -> None:
        today = local_day(self.now)
        self.attempt(lambda: self.record.record_recovery(today - days_ago * DAY, today, STAFF))

    @invariant()
    def the_valid_history_obeys_the_schedule(self) -> None:
        valid = self.record.valid_doses
        assert schedule_problems(valid, self.born) == []
        assert all(d.deviations == () and d.override_reason is None for d in valid)

    @invariant()
    def the_status_counts_the_valid_doses(self) -> None:
        status = vaccination_status(self.record, self.born, self.now, CATALOGUE)
        assert status.doses == len([d for d in self.record.valid_doses if d.given_at <= self.now])


def test_random_vaccination_commands_keep_the_schedule() -> None:
    run_state_machine_as_test(
        VaccinationMachine,
        settings=settings(
            max_examples=120,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@settings(max_examples=30, deadline=None, database=None)
@example(first="vaxzevria", second="vaxzevria", hours_before=24 * 10)
@example(first="comirnaty", second="comirnaty", hours_before=1)
@given(first=common_products, second=common_products, hours_before=st.integers(1, 24 * 60))
def test_a_dose_backdated_before_another_keeps_the_schedule(
    first: str, second: str, hours_before: int
) -> None:
    born = date(1980, 1, 1)
    record = VaccinationRecord(uuid4(), national_id(born, Sex.MALE), STAFF)
    later = START + 100 * DAY
    ctx = DoseContext(born, record.screenings, record.adverse_events, CATALOGUE, HORIZON)
    record.administer(dose(first, later), ctx, None, STAFF)
    with contextlib.suppress(DomainError):
        record.administer(dose(second, later - hours_before * timedelta(hours=1)), ctx, None, STAFF)
    assert schedule_problems(record.valid_doses, born) == []
