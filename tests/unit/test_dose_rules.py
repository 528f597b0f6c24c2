"""The rules a dose must obey, driven through VaccinationRecord.administer and `violations`."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

import pytest

from domain.base import recording_clock
from domain.dose_rules import CLOCK_TOLERANCE, age_on, nth_birthday, violations
from domain.doses import DoseKind, ScreeningOutcome, Severity
from domain.errors import (
    BoosterTooEarly,
    Contraindicated,
    DoseBeforeBirth,
    DoseInFuture,
    DoseRuleViolation,
    DuplicateDose,
    IntervalTooShort,
    InvalidValue,
    LotUnusable,
    MixingNotAllowed,
    Postponed,
    TooManyDoses,
    TooYoungForProduct,
    UnknownProduct,
)
from domain.lots import Lot
from domain.vaccination import VaccinationRecord
from tests.unit.domain_builders import (
    ADMIN,
    STAFF,
    adverse,
    context,
    dose,
    give,
    new_record,
    screening,
    utc,
    vn,
)

DAY = timedelta(days=1)
T0 = vn(2021, 8, 2, 9)
PRIMARY = DoseKind.PRIMARY
BOOSTER = DoseKind.BOOSTER


def series(record: VaccinationRecord, product: str = "vaxzevria", gap: int = 28) -> None:
    """A complete two-dose series: T0 and T0 + gap days."""
    give(record, product, T0)
    give(record, product, T0 + gap * DAY)


class TestTiming:
    def test_not_before_birth_by_the_local_day(self) -> None:
        record = new_record()
        born = date(2021, 8, 2)
        with pytest.raises(DoseBeforeBirth) as caught:
            give(record, "comirnaty", vn(2021, 8, 1, 23, 59), date_of_birth=born)
        assert caught.value.details["date_of_birth"] == "2021-08-02"

    def test_not_in_the_future_beyond_the_clock_tolerance(self) -> None:
        record = new_record()
        now = T0
        give(record, "vaxzevria", now + CLOCK_TOLERANCE, now=now)
        too_late = now + CLOCK_TOLERANCE + timedelta(seconds=1)
        with pytest.raises(DoseInFuture) as caught:
            give(record, "comirnaty", too_late, now=now)
        assert caught.value.details["given_at"] == too_late.isoformat()


class TestAge:
    @pytest.mark.parametrize(
        ("product", "years"), [("comirnaty", 12), ("spikevax", 12), ("vaxzevria", 18)]
    )
    def test_from_the_minimum_age_birthday(self, product: str, years: int) -> None:
        born = date(2003, 8, 2)
        birthday = nth_birthday(born, years)
        with pytest.raises(TooYoungForProduct) as caught:
            give(new_record(), product, vn(birthday.year, 8, 1, 23), date_of_birth=born)
        assert caught.value.details == {
            "minimum_age": years,
            "age": years - 1,
            "earliest_date": str(birthday),
            "violations": ["too_young_for_product"],
        }
        give(new_record(), product, vn(birthday.year, 8, 2, 0, 5), date_of_birth=born)

    def test_born_on_29_february(self) -> None:
        born = date(2004, 2, 29)
        assert nth_birthday(born, 12) == date(2016, 2, 29)
        assert nth_birthday(born, 18) == date(2022, 3, 1)
        assert age_on(born, date(2022, 2, 28)) == 17
        with pytest.raises(TooYoungForProduct) as caught:
            give(new_record(), "vaxzevria", vn(2022, 2, 28), date_of_birth=born)
        assert caught.value.details["earliest_date"] == "2022-03-01"
        give(new_record(), "vaxzevria", vn(2022, 3, 1), date_of_birth=born)


class TestPrimarySeries:
    def test_a_second_astrazeneca_dose_10_days_after_the_first(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        with pytest.raises(IntervalTooShort) as caught:
            give(record, "vaxzevria", T0 + 10 * DAY)
        assert caught.value.code == "interval_too_short"
        assert caught.value.details == {
            "earliest_date": str(first.given_on + 28 * DAY),
            "minimum_interval_days": 28,
            "previous_dose_on": "2021-08-02",
            "violations": ["interval_too_short"],
        }
        assert len(record.doses) == 1

    @pytest.mark.parametrize(("product", "days"), [("vaxzevria", 28), ("comirnaty", 21)])
    def test_the_minimum_interval_is_a_whole_local_day_count(self, product: str, days: int) -> None:
        record = new_record()
        give(record, product, T0)
        with pytest.raises(IntervalTooShort):
            give(record, product, vn(2021, 8, 1, 23, 59) + days * DAY)
        give(record, product, vn(2021, 8, 2, 0, 1) + days * DAY)
        assert len(record.valid_doses) == 2

    def test_astrazeneca_then_comirnaty_is_allowed_after_the_astrazeneca_interval(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        with pytest.raises(IntervalTooShort) as caught:
            give(record, "comirnaty", T0 + 21 * DAY)
        assert caught.value.details["minimum_interval_days"] == 28
        give(record, "comirnaty", T0 + 28 * DAY)
        assert [d.product for d in record.valid_doses] == ["vaxzevria", "comirnaty"]

    def test_comirnaty_then_astrazeneca_is_refused(self) -> None:
        record = new_record()
        give(record, "comirnaty", T0)
        with pytest.raises(MixingNotAllowed) as caught:
            give(record, "vaxzevria", T0 + 60 * DAY)
        assert caught.value.details == {
            "previous_product": "comirnaty",
            "allowed_products": ["comirnaty"],
            "violations": ["mixing_not_allowed"],
        }

    def test_janssen_single_dose_completes_the_series(self) -> None:
        record = new_record()
        give(record, "janssen", T0)
        with pytest.raises(TooManyDoses) as caught:
            give(record, "janssen", T0 + 60 * DAY)
        assert caught.value.details["series_doses"] == 1
        give(record, "comirnaty", T0 + 90 * DAY, BOOSTER)

    def test_abdala_has_three_doses_14_days_apart(self) -> None:
        record = new_record()
        give(record, "abdala", T0)
        give(record, "abdala", T0 + 14 * DAY)
        with pytest.raises(IntervalTooShort):
            give(record, "abdala", T0 + 27 * DAY)
        give(record, "abdala", T0 + 28 * DAY)
        with pytest.raises(TooManyDoses) as caught:
            give(record, "abdala", T0 + 60 * DAY)
        assert caught.value.details["series_doses"] == 3

    def test_no_third_primary_dose_of_a_two_dose_series(self) -> None:
        record = new_record()
        series(record)
        with pytest.raises(TooManyDoses):
            give(record, "vaxzevria", T0 + 120 * DAY)

    def test_the_series_size_comes_from_the_first_product(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        give(record, "spikevax", T0 + 30 * DAY)
        with pytest.raises(TooManyDoses):
            give(record, "spikevax", T0 + 60 * DAY)

    def test_an_unknown_product_is_refused(self) -> None:
        with pytest.raises(UnknownProduct):
            give(new_record(), "sinovac", T0)


class TestBoosters:
    def test_a_booster_needs_a_complete_series(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        with pytest.raises(BoosterTooEarly) as caught:
            give(record, "comirnaty", T0 + 200 * DAY, BOOSTER)
        assert caught.value.details["primary_doses"] == 1
        assert caught.value.details["series_doses"] == 2

    def test_a_booster_90_days_after_the_series(self) -> None:
        record = new_record()
        series(record)
        last = T0 + 28 * DAY
        with pytest.raises(BoosterTooEarly) as caught:
            give(record, "comirnaty", last + 89 * DAY, BOOSTER)
        assert caught.value.details["earliest_date"] == str((last + 90 * DAY).date())
        give(record, "comirnaty", last + 90 * DAY, BOOSTER)

    def test_a_second_booster_90_days_after_the_first_and_no_third(self) -> None:
        record = new_record()
        series(record)
        first = T0 + 118 * DAY
        give(record, "comirnaty", first, BOOSTER)
        with pytest.raises(BoosterTooEarly):
            give(record, "spikevax", first + 89 * DAY, BOOSTER)
        give(record, "spikevax", first + 90 * DAY, BOOSTER)
        with pytest.raises(TooManyDoses) as caught:
            give(record, "vaxzevria", first + 400 * DAY, BOOSTER)
        assert caught.value.details["boosters"] == 2

    def test_only_booster_products_boost(self) -> None:
        record = new_record()
        series(record, "sputnik-v", 21)
        with pytest.raises(MixingNotAllowed) as caught:
            give(record, "sputnik-v", T0 + 200 * DAY, BOOSTER)
        assert caught.value.details["allowed_products"] == ["comirnaty", "spikevax", "vaxzevria"]

    def test_a_booster_is_90_days_after_the_latest_dose_of_either_kind(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        second = give(record, "vaxzevria", T0 + 28 * DAY)
        give(record, "comirnaty", T0 + 118 * DAY, BOOSTER)
        record.void_dose(second.dose_id, "recorded on the wrong person", STAFF)
        give(record, "vaxzevria", T0 + 200 * DAY)
        with pytest.raises(BoosterTooEarly):
            give(record, "comirnaty", T0 + 210 * DAY, BOOSTER)


class TestLots:
    def make_lot(self) -> Lot:
        return Lot.register(uuid4(), " abv123 ", "vaxzevria", date(2021, 9, 30), ADMIN)

    def test_registration_normalises_the_number(self) -> None:
        lot = self.make_lot()
        assert lot.lot_number == "ABV123"
        with pytest.raises(UnknownProduct):
            Lot.register(uuid4(), "X1", "sinovac", date(2021, 9, 30), ADMIN)
        with pytest.raises(InvalidValue):
            Lot.register(uuid4(), "  ", "vaxzevria", date(2021, 9, 30), ADMIN)
        with pytest.raises(InvalidValue):
            Lot.register(uuid4(), "X" * 33, "vaxzevria", date(2021, 9, 30), ADMIN)

    def test_usable_until_the_expiry_day(self) -> None:
        lot = self.make_lot()
        on_expiry = vn(2021, 9, 30, 23)
        assert lot.usable_problem("vaxzevria", on_expiry, date(2021, 9, 30)) is None
        problem = lot.usable_problem("vaxzevria", on_expiry + DAY, date(2021, 10, 1))
        assert problem == "lot ABV123 expired on 2021-09-30"
        wrong_product = lot.usable_problem("comirnaty", on_expiry, on_expiry.date())
        assert "not comirnaty" in (wrong_product or "")

    def test_a_recall_applies_from_its_moment(self) -> None:
        lot = self.make_lot()
        recalled_at = utc(2021, 8, 10, 5)
        lot.recall("contamination", recalled_at, ADMIN)
        lot.recall("again", recalled_at + DAY, ADMIN)
        assert lot.recalled_at == recalled_at
        before = recalled_at - timedelta(minutes=1)
        assert lot.usable_problem("vaxzevria", before, before.date()) is None
        assert "recalled on 2021-08-10" in (
            lot.usable_problem("vaxzevria", recalled_at, recalled_at.date()) or ""
        )

    @pytest.mark.parametrize(
        "problem",
        [
            "lot ABV123 expired on 2021-07-31",
            "lot ABV123 was recalled on 2021-08-01",
            "lot XYZ of vaxzevria is not in the lot register",
        ],
    )
    def test_no_dose_from_an_unusable_lot(self, problem: str) -> None:
        record = new_record()
        with pytest.raises(LotUnusable) as caught:
            give(record, "vaxzevria", T0, lot_problem=problem)
        assert str(caught.value) == problem
        assert record.doses == []


class TestScreening:
    def test_contraindicated_until_screened_eligible_again(self) -> None:
        record = new_record()
        record.screen(screening(ScreeningOutcome.CONTRAINDICATED, T0 - DAY), STAFF)
        with pytest.raises(Contraindicated) as caught:
            give(record, "vaxzevria", T0)
        assert caught.value.details["screened_at"] == (T0 - DAY).isoformat()
        record.screen(screening(ScreeningOutcome.ELIGIBLE, T0 - timedelta(hours=1)), STAFF)
        give(record, "vaxzevria", T0)

    def test_a_screening_after_the_dose_does_not_apply_to_it(self) -> None:
        record = new_record()
        record.screen(screening(ScreeningOutcome.CONTRAINDICATED, T0 + DAY), STAFF)
        give(record, "vaxzevria", T0, now=T0 + 2 * DAY)

    def test_postponed_until_a_date(self) -> None:
        record = new_record()
        until = date(2021, 8, 16)
        record.screen(screening(ScreeningOutcome.POSTPONED, T0, until), STAFF)
        with pytest.raises(Postponed) as caught:
            give(record, "vaxzevria", vn(2021, 8, 15, 23, 30))
        assert caught.value.details["earliest_date"] == "2021-08-16"
        give(record, "vaxzevria", vn(2021, 8, 16, 0, 30))

    def test_referral_to_hospital_does_not_block(self) -> None:
        record = new_record()
        record.screen(screening(ScreeningOutcome.REFER_TO_HOSPITAL, T0 - DAY), STAFF)
        give(record, "vaxzevria", T0)


class TestAdverseEvents:
    def test_a_severe_event_blocks_the_same_product_but_not_another(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.report_adverse_event(adverse(first, Severity.SEVERE), T0 + DAY, STAFF)
        with pytest.raises(Contraindicated) as caught:
            give(record, "vaxzevria", T0 + 60 * DAY)
        assert caught.value.details == {
            "product": "vaxzevria",
            "violations": ["contraindicated"],
        }
        give(record, "comirnaty", T0 + 60 * DAY)

    def test_a_mild_event_blocks_nothing(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.report_adverse_event(adverse(first, Severity.MILD), T0 + DAY, STAFF)
        give(record, "vaxzevria", T0 + 60 * DAY)

    def test_a_severe_event_on_a_voided_dose_blocks_nothing(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.report_adverse_event(adverse(first, Severity.SEVERE), T0 + DAY, STAFF)
        record.void_dose(first.dose_id, "wrong person", STAFF)
        give(record, "vaxzevria", T0 + 60 * DAY)


class TestDuplicates:
    def test_the_same_product_twice_on_one_local_day(self) -> None:
        record = new_record()
        series(record)
        first = give(record, "comirnaty", T0 + 118 * DAY, BOOSTER)
        with pytest.raises(DuplicateDose) as caught:
            give(record, "comirnaty", T0 + 118 * DAY + timedelta(hours=3), BOOSTER)
        assert caught.value.details["existing_dose_id"] == str(first.dose_id)
        assert caught.value.details["violations"][0] == "duplicate_dose"

    def test_utc_evening_and_next_vietnamese_morning_are_one_local_day(self) -> None:
        record = new_record()
        evening_utc = utc(2021, 8, 1, 18)  # 01:00 on 2 August in Vietnam
        next_utc_day = utc(2021, 8, 2, 9)  # 16:00 on 2 August in Vietnam
        first = give(record, "vaxzevria", evening_utc)
        second = dose("vaxzevria", next_utc_day)
        codes = [v.code for v in violations(second, [first], context(record, next_utc_day))]
        assert "duplicate_dose" in codes
        with pytest.raises(DuplicateDose):
            record.administer(second, context(record, next_utc_day), None, STAFF)

    def test_one_utc_day_can_be_two_local_days(self) -> None:
        record = new_record()
        late = utc(2021, 8, 1, 16)  # 23:00 on 1 August in Vietnam
        after_midnight = utc(2021, 8, 1, 17, 30)  # 00:30 on 2 August in Vietnam
        first = give(record, "vaxzevria", late)
        second = dose("vaxzevria", after_midnight)
        codes = [v.code for v in violations(second, [first], context(record, after_midnight))]
        assert codes == ["interval_too_short"]

    def test_different_products_on_one_day_are_not_duplicates(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        second = dose("comirnaty", T0 + timedelta(hours=1))
        codes = [v.code for v in violations(second, [first], context(record, second.given_at))]
        assert "duplicate_dose" not in codes


class TestOverrides:
    def test_an_override_records_the_deviations_instead_of_raising(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        recorded = give(
            record, "vaxzevria", T0 + 10 * DAY, override_reason="outbreak, ministry order"
        )
        assert recorded.deviations == ("interval_too_short",)
        assert recorded.override_reason == "outbreak, ministry order"
        assert record.valid_doses[-1] == recorded

    def test_every_broken_rule_is_kept_in_order(self) -> None:
        record = new_record()
        give(record, "comirnaty", T0)
        record.screen(screening(ScreeningOutcome.CONTRAINDICATED, T0 + DAY), STAFF)
        recorded = give(
            record,
            "vaxzevria",
            T0 + 5 * DAY,
            override_reason="supervised",
            lot_problem="lot X expired on 2021-08-01",
        )
        assert recorded.deviations == (
            "contraindicated",
            "mixing_not_allowed",
            "interval_too_short",
            "lot_unusable",
        )

    def test_the_raised_error_lists_every_violation(self) -> None:
        record = new_record()
        give(record, "comirnaty", T0)
        with pytest.raises(DoseRuleViolation) as caught:
            give(record, "vaxzevria", T0 + 5 * DAY)
        assert caught.value.code == "mixing_not_allowed"
        assert caught.value.details["violations"] == ["mixing_not_allowed", "interval_too_short"]

    def test_a_blank_override_reason_does_not_override(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        with pytest.raises(IntervalTooShort):
            give(record, "vaxzevria", T0 + 10 * DAY, override_reason="   ")

    def test_an_override_on_a_clean_dose_is_dropped(self) -> None:
        recorded = give(new_record(), "vaxzevria", T0, override_reason="not needed")
        assert recorded.deviations == ()
        assert recorded.override_reason is None

    def test_recorded_events_carry_the_recording_clock(self) -> None:
        with recording_clock(lambda: utc(2021, 8, 2)):
            record = new_record()
            give(record, "vaxzevria", T0)
        events = record.collect_events()
        assert [e.timestamp for e in events] == [utc(2021, 8, 2)] * 2
