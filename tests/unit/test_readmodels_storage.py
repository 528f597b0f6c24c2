"""The stored form of a citizen: state round trips, the value's parts, memoised statuses,
and the share of a derivation a forked child computes."""

from __future__ import annotations

import marshal
import os
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.checkpoint_policy import DEFAULT_POLICY
from domain.doses import Dose, DoseKind, InjectionSite
from domain.status import vaccination_status
from domain.vaccines import CATALOGUE
from projections.forked import ForkedShare
from projections.models.checkpoint import _document, encode, pick, stored_name
from projections.models.projection import join_value, split_value, unpack
from projections.models.state import (
    CitizenState,
    DeclarationState,
    DoseState,
    ScreeningState,
    _dose_id,
    _kept_dose,
    from_us,
    us,
)
from projections.models.state import (
    TestState as SampledTest,
)
from projections.stores import MemoryStore

START = datetime(2021, 6, 1, 1, 30, tzinfo=UTC)
PRODUCTS = sorted(CATALOGUE.products)


def full_state() -> CitizenState:
    return CitizenState(
        masked_name="Nguyễn T. L.",
        date_of_birth="1990-05-01",
        province="079",
        declaration=DeclarationState(
            "ab" * 16, "079", "001.001", "2021-08-03", 10, 99, ["fever"], True, False, None
        ),
        test=SampledTest("pcr", "negative", 7),
        doses=[
            DoseState("0badcafe", "comirnaty", us(START), False, "79-HCM-001"),
            DoseState("cafe0bad", "spikevax", us(START) + 5, True, "79-HCM-002", severe=True),
        ],
        screening=ScreeningState("postponed", 3, "79-HCM-001", "2021-09-01"),
        registered=("79-HCM-001", 2),
        recovered_on="2021-07-01",
        record_moved=True,
        seen=12345,
    )


def test_the_state_round_trips_with_its_name_from_the_document() -> None:
    state = full_state()
    assert CitizenState.decode(state.encode(), state.masked_name) == state
    assert CitizenState.decode(CitizenState().encode()) == CitizenState()


def test_a_context_s_part_carries_through_marshal_into_another_state() -> None:
    state = full_state()
    other = CitizenState(declaration=state.declaration, test=state.test, seen=state.seen)
    other.take_population_part(marshal.loads(marshal.dumps(state.population_part())))
    other.take_immunization_part(marshal.loads(marshal.dumps(state.immunization_part())))
    assert other == state


def test_the_gone_keep_their_name_in_the_state() -> None:
    state = CitizenState(masked_name="Lê T. H.", date_of_birth="2001-02-14", gone=True, seen=5)
    assert CitizenState.decode(state.encode()) == state


def test_a_value_splits_into_its_parts_and_serves_the_timeline_inflated() -> None:
    timeline = encode([(0, ['"name":"A. B."', '"declaration":null']), (50, ['"name":"A. B."'])])
    value = join_value(timeline, b"[1,2]")
    assert split_value(value) == (timeline, b"[1,2]")
    assert pick(unpack(value), 10) == b'{"name":"A. B.","declaration":null}'
    assert pick(unpack(value), 50) == b'{"name":"A. B."}'
    assert stored_name(unpack(value)) == "A. B."


def test_without_a_vaccination_record_documents_show_the_empty_record_s_status() -> None:
    state = CitizenState(masked_name="A. B.", date_of_birth="1990-05-01", seen=us(START))
    assert not state.has_vaccination_record
    status = state.status_at(us(START), CATALOGUE)
    computed = _document(state, us(START), status, {}, DEFAULT_POLICY)
    assert _document(state, us(START), None, {}, DEFAULT_POLICY) == computed


dose_steps = st.lists(
    st.tuples(st.integers(0, 120), st.booleans(), st.sampled_from(PRODUCTS)), max_size=4
)


@settings(max_examples=80, deadline=None)
@given(
    steps=dose_steps,
    moments=st.lists(st.integers(0, 400 * 24), min_size=1, max_size=8),
    screened=st.sampled_from([None, "eligible", "postponed", "contraindicated"]),
    birth=st.dates(date(1940, 1, 1), date(2012, 1, 1)),
)
def test_memoised_statuses_equal_the_domain_s(
    steps: list[tuple[int, bool, str]],
    moments: list[int],
    screened: str | None,
    birth: date,
) -> None:
    state = CitizenState(date_of_birth=birth.isoformat())
    given = START
    for i, (days, booster, product) in enumerate(steps):
        given += timedelta(days=days)
        state.doses.append(DoseState(f"{i:08x}", product, us(given), booster, "u"))
    if screened is not None:
        until = "2021-10-01" if screened == "postponed" else None
        state.screening = ScreeningState(screened, us(START + timedelta(days=30)), "u", until)
    for hours in moments:
        at = us(START + timedelta(hours=hours))
        expected = vaccination_status(state.as_record(), birth, from_us(at), CATALOGUE)
        assert state.status_at(at, CATALOGUE) == expected


def test_kept_doses_equal_doses_made_by_their_constructor() -> None:
    for booster in (False, True):
        kept = DoseState("0badcafe", "comirnaty", us(START), booster, "79-HCM-001")
        made = Dose(
            _dose_id(3),
            "comirnaty",
            "",
            START,
            "79-HCM-001",
            "",
            InjectionSite.LEFT_ARM,
            DoseKind.BOOSTER if booster else DoseKind.PRIMARY,
        )
        assert vars(_kept_dose(3, kept)) == vars(made)
        assert _kept_dose(3, kept) == made


def test_a_forked_share_returns_what_its_child_computed_or_none_when_it_failed() -> None:
    computed = [(b"v" * 70_000, {("a:079", b"m", 1.5)}, {("sp", "079|18-49|first"): 1})]
    assert ForkedShare(lambda: computed).result(timeout=30) == computed
    assert ForkedShare(lambda: 1 // 0).result(timeout=30) is None
    assert ForkedShare(lambda: object()).result(timeout=30) is None


def test_a_share_that_cannot_be_forked_is_left_to_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert ForkedShare(lambda: [1, 2]).result(timeout=30) is None


def test_a_forked_share_that_takes_too_long_is_killed() -> None:
    started = time.monotonic()
    assert ForkedShare(lambda: time.sleep(60)).result(timeout=0.5) is None
    assert time.monotonic() - started < 10


def test_a_forked_child_reads_a_memory_store_whose_lock_another_thread_held() -> None:
    store = MemoryStore()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        read = ForkedShare(lambda: store.meta("citizens") is None).result(timeout=10)
    finally:
        release.set()
        holder.join()
    assert read is True
