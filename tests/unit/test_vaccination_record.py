"""VaccinationRecord commands: registration, screening, corrections, voids, reactions, recovery."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

import pytest

from domain.base import recording_clock
from domain.doses import AdverseEvent, DoseKind, InjectionSite, ScreeningOutcome, Severity
from domain.errors import (
    CitizenMoved,
    DoseNotFound,
    DuplicateDose,
    IntervalTooShort,
    InvalidValue,
    LotUnusable,
    MixingNotAllowed,
    TooManyDoses,
)
from domain.vaccination import MAX_TEXT
from tests.unit.domain_builders import (
    STAFF,
    adverse,
    context,
    correct,
    dose,
    give,
    national_id,
    new_record,
    screening,
    utc,
    vn,
)

DAY = timedelta(days=1)
T0 = vn(2021, 8, 2, 9)
NOW = T0 + 365 * DAY


class TestRegistrationAndScreening:
    def test_register_with_a_priority_group(self) -> None:
        record = new_record()
        record.register("79-HCM-001", 3, STAFF)
        record.register("79-HCM-002", None, STAFF)
        assert record.registrations == [("79-HCM-001", 3), ("79-HCM-002", None)]

    @pytest.mark.parametrize("group", [0, 17, -1])
    def test_priority_groups_are_1_to_16(self, group: int) -> None:
        with pytest.raises(InvalidValue):
            new_record().register("79-HCM-001", group, STAFF)

    def test_screenings_are_kept_in_time_order(self) -> None:
        record = new_record()
        late = screening(ScreeningOutcome.ELIGIBLE, T0)
        early = screening(ScreeningOutcome.POSTPONED, T0 - DAY, date(2021, 8, 3))
        record.screen(late, STAFF)
        record.screen(early, STAFF)
        assert record.screenings == [early, late]

    @pytest.mark.parametrize(
        ("outcome", "until"),
        [
            (ScreeningOutcome.POSTPONED, None),
            (ScreeningOutcome.ELIGIBLE, date(2021, 8, 3)),
            (ScreeningOutcome.CONTRAINDICATED, date(2021, 8, 3)),
        ],
    )
    def test_only_a_postponement_has_a_date(
        self, outcome: ScreeningOutcome, until: date | None
    ) -> None:
        with pytest.raises(InvalidValue):
            new_record().screen(screening(outcome, T0, until), STAFF)

    def test_notes_are_limited(self) -> None:
        long = screening(ScreeningOutcome.ELIGIBLE, T0)
        long = type(long)(long.outcome, long.screened_at, long.unit, None, "x" * (MAX_TEXT + 1))
        with pytest.raises(InvalidValue):
            new_record().screen(long, STAFF)


class TestAdminister:
    def test_a_dose_id_is_recorded_once(self) -> None:
        record = new_record()
        given = dose("vaxzevria", T0)
        record.administer(given, context(record, T0), None, STAFF)
        again = dose("comirnaty", T0 + 60 * DAY, dose_id=given.dose_id)
        with pytest.raises(InvalidValue):
            record.administer(again, context(record, NOW), None, STAFF)

    def test_a_refused_dose_records_nothing(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        record.collect_events()
        with pytest.raises(IntervalTooShort):
            give(record, "vaxzevria", T0 + DAY)
        assert record.collect_events() == []

    def test_a_backdated_dose_may_not_break_the_interval_of_a_later_dose(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        with pytest.raises(IntervalTooShort):
            give(record, "vaxzevria", T0 - 10 * DAY, now=NOW)

    def test_a_backdated_dose_earlier_on_the_same_day_is_a_duplicate(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        with pytest.raises(DuplicateDose):
            give(record, "vaxzevria", T0 - timedelta(hours=1), now=NOW)

    def test_a_backdated_dose_may_not_exceed_the_series(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        give(record, "vaxzevria", T0 + 60 * DAY)
        with pytest.raises(TooManyDoses):
            give(record, "vaxzevria", T0 + 30 * DAY, now=NOW)

    def test_a_backdated_dose_that_fits_is_accepted(self) -> None:
        record = new_record()
        later = give(record, "vaxzevria", T0 + 60 * DAY)
        earlier = give(record, "vaxzevria", T0, now=NOW)
        assert record.valid_doses == [earlier, later]

    def test_a_backdated_dose_is_not_refused_for_a_later_override(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0 + 60 * DAY)
        give(record, "vaxzevria", T0 + 70 * DAY, override_reason="outbreak")
        give(record, "vaxzevria", T0 + 65 * DAY, override_reason="outbreak")
        with pytest.raises(IntervalTooShort):
            give(record, "vaxzevria", T0 + 50 * DAY, now=NOW)


class TestCorrections:
    def test_a_correction_replaces_the_fields(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        corrected = correct(record, first, NOW, lot="ABV999", site=InjectionSite.RIGHT_ARM)
        assert record.doses == [corrected]
        assert corrected.lot == "ABV999"
        assert corrected.dose_id == first.dose_id
        event = record.collect_events()[-1]
        assert type(event).__name__ == "DoseCorrected"
        assert event.reason == "wrong entry at the site"  # type: ignore[attr-defined]

    def test_a_correction_that_makes_a_later_dose_break_its_interval_is_refused(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        second = give(record, "vaxzevria", T0 + 30 * DAY)
        with pytest.raises(IntervalTooShort) as caught:
            correct(record, first, NOW, given_at=T0 + 5 * DAY)
        assert caught.value.details["previous_dose_on"] == "2021-08-07"
        assert record.valid_doses == [first, second]

    def test_a_correction_that_breaks_its_own_interval_is_refused(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        second = give(record, "vaxzevria", T0 + 30 * DAY)
        with pytest.raises(IntervalTooShort):
            correct(record, second, NOW, given_at=T0 + 20 * DAY)

    def test_a_correction_may_reorder_doses(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        give(record, "comirnaty", T0 + 30 * DAY)
        with pytest.raises(MixingNotAllowed) as caught:
            correct(record, first, NOW, given_at=T0 + 40 * DAY)
        assert caught.value.details["violations"] == ["mixing_not_allowed", "interval_too_short"]
        moved = correct(record, first, NOW, given_at=T0 + 60 * DAY, product="comirnaty")
        assert record.valid_doses[-1] == moved

    def test_an_override_on_the_correction_records_the_deviation(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        give(record, "vaxzevria", T0 + 30 * DAY)
        corrected = correct(
            record, first, NOW, given_at=T0 + 5 * DAY, override_reason="the register says so"
        )
        assert corrected.deviations == ("interval_too_short",)
        assert corrected.override_reason == "the register says so"

    def test_an_earlier_override_is_not_raised_again(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        give(record, "vaxzevria", T0 + 10 * DAY, override_reason="outbreak")
        corrected = correct(record, first, NOW, lot="ABV999")
        assert corrected.deviations == ()

    def test_a_late_severe_reaction_report_does_not_block_unrelated_corrections(self) -> None:
        record = new_record()
        first = give(record, "comirnaty", T0)
        second = give(record, "comirnaty", T0 + 21 * DAY)
        late = adverse(first, Severity.SEVERE, T0 + DAY)
        record.report_adverse_event(late, T0 + 30 * DAY, STAFF)
        corrected = correct(record, second, NOW, lot="FK1234")
        assert corrected.lot == "FK1234"

    def test_a_correction_from_an_unusable_lot_is_refused(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(LotUnusable):
            correct(record, first, NOW, lot="OLD", lot_problem="lot OLD expired on 2021-01-01")

    def test_a_correction_needs_a_reason_and_an_existing_dose(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(InvalidValue):
            correct(record, first, NOW, reason="  ")
        with pytest.raises(InvalidValue):
            correct(record, first, NOW, reason="x" * (MAX_TEXT + 1))
        with pytest.raises(DoseNotFound) as caught:
            correct(record, dose("vaxzevria", T0), NOW)
        assert "dose_id" in caught.value.details
        record.void_dose(first.dose_id, "wrong person", STAFF)
        with pytest.raises(DoseNotFound):
            correct(record, first, NOW, lot="ABV999")


class TestVoids:
    def test_a_voided_dose_is_not_valid_and_cannot_be_voided_again(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.void_dose(first.dose_id, "wrong person", STAFF)
        assert record.doses == [first]
        assert record.valid_doses == []
        assert record.voided == {first.dose_id}
        with pytest.raises(DoseNotFound):
            record.void_dose(first.dose_id, "again", STAFF)
        with pytest.raises(DoseNotFound):
            record.void_dose(uuid4(), "unknown", STAFF)

    def test_a_void_needs_a_reason(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(InvalidValue):
            record.void_dose(first.dose_id, " ", STAFF)

    def test_voided_doses_do_not_count_for_intervals_or_duplicates(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.void_dose(first.dose_id, "wrong person", STAFF)
        give(record, "vaxzevria", T0 + timedelta(hours=3))
        give(record, "vaxzevria", T0 + 28 * DAY)
        assert len(record.valid_doses) == 2


class TestAdverseEvents:
    def test_a_report_against_a_dose(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        report = adverse(first, Severity.SEVERE)
        record.report_adverse_event(report, T0 + DAY, STAFF)
        assert record.adverse_events == [report]

    def test_the_onset_lies_between_the_dose_and_now(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(InvalidValue) as caught:
            record.report_adverse_event(
                adverse(first, Severity.MILD, T0 - timedelta(minutes=1)), NOW, STAFF
            )
        assert caught.value.details["given_at"] == T0.isoformat()
        with pytest.raises(InvalidValue):
            record.report_adverse_event(adverse(first, Severity.MILD, NOW + DAY), NOW, STAFF)
        record.report_adverse_event(adverse(first, Severity.MILD, T0), NOW, STAFF)
        record.report_adverse_event(adverse(first, Severity.MILD, NOW), NOW, STAFF)

    def test_a_report_needs_a_valid_dose_and_a_short_description(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(InvalidValue):
            record.report_adverse_event(
                AdverseEvent(first.dose_id, T0 + DAY, Severity.MILD, "x" * (MAX_TEXT + 1)),
                NOW,
                STAFF,
            )
        record.void_dose(first.dose_id, "wrong person", STAFF)
        with pytest.raises(DoseNotFound):
            record.report_adverse_event(adverse(first, Severity.MILD), NOW, STAFF)


class TestMovedHistory:
    def test_a_history_moves_to_the_right_id_number(self) -> None:
        wrong = new_record()
        first = give(wrong, "vaxzevria", T0)
        voided = give(wrong, "comirnaty", T0 + 40 * DAY)
        wrong.void_dose(voided.dose_id, "entered twice", STAFF)
        wrong.screen(screening(ScreeningOutcome.ELIGIBLE, T0 - DAY), STAFF)
        wrong.report_adverse_event(adverse(first, Severity.MILD), NOW, STAFF)
        wrong.record_recovery(date(2021, 6, 1), date(2021, 9, 1), STAFF)
        right = new_record(national_id(serial="654321"))
        right.record_recovery(date(2021, 7, 1), date(2021, 9, 1), STAFF)
        right.receive_history(wrong, "wrong ID number at the site", STAFF)
        wrong.move_to(right.person, "wrong ID number at the site", STAFF)
        assert right.valid_doses == [first]
        assert right.screenings == wrong.screenings
        assert right.adverse_events == wrong.adverse_events
        assert right.recovered_on == date(2021, 7, 1)
        assert right.received_from == [wrong.person]
        assert wrong.moved_to == right.person

    def test_doses_already_on_the_record_are_not_taken_twice(self) -> None:
        wrong = new_record()
        give(wrong, "vaxzevria", T0)
        right = new_record(national_id(serial="654321"))
        right.receive_history(wrong, "merge", STAFF)
        right.receive_history(wrong, "merge again", STAFF)
        assert len(right.doses) == 1

    def test_a_record_moves_once_and_with_a_reason(self) -> None:
        record = new_record()
        target = national_id(serial="654321")
        with pytest.raises(InvalidValue):
            record.move_to(target, " ", STAFF)
        record.move_to(target, "wrong number", STAFF)
        with pytest.raises(CitizenMoved) as caught:
            record.move_to(national_id(serial="000001"), "again", STAFF)
        assert caught.value.details == {"moved_to": str(target)}
        with pytest.raises(InvalidValue):
            new_record().receive_history(record, "", STAFF)


class TestRecovery:
    def test_the_latest_positive_test_is_kept(self) -> None:
        record = new_record()
        record.record_recovery(date(2021, 9, 1), date(2021, 9, 5), STAFF)
        record.record_recovery(date(2021, 7, 1), date(2021, 9, 5), STAFF)
        assert record.recovered_on == date(2021, 9, 1)
        record.record_recovery(date(2021, 9, 5), date(2021, 9, 5), STAFF)
        assert record.recovered_on == date(2021, 9, 5)

    def test_not_in_the_future(self) -> None:
        with pytest.raises(InvalidValue):
            new_record().record_recovery(date(2021, 9, 6), date(2021, 9, 5), STAFF)


def test_event_types_and_timestamps() -> None:
    with recording_clock(lambda: utc(2021, 8, 1)):
        record = new_record()
        first = give(record, "vaxzevria", T0)
    with recording_clock(lambda: utc(2021, 8, 3)):
        record.report_adverse_event(adverse(first, Severity.MILD), T0 + DAY, STAFF)
        record.void_dose(first.dose_id, "wrong person", STAFF)
    events = record.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Opened",
        "DoseAdministered",
        "AdverseEventReported",
        "DoseVoided",
    ]
    assert [e.timestamp for e in events] == [utc(2021, 8, 1)] * 2 + [utc(2021, 8, 3)] * 2
    assert record.modified_on == utc(2021, 8, 3)
    assert events[1].dose.kind is DoseKind.PRIMARY  # type: ignore[attr-defined]
