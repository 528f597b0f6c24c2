"""vaccination_status: the status, the next dose, and protection from recovery."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from domain.doses import DoseKind, ScreeningOutcome, Severity
from domain.status import NextDose, Status, VaccinationStatus, vaccination_status
from domain.vaccination import VaccinationRecord
from domain.vaccines import CATALOGUE
from tests.unit.domain_builders import (
    ADULT_BIRTH,
    PRODUCTS,
    STAFF,
    adverse,
    give,
    new_record,
    screening,
    vn,
)

DAY = timedelta(days=1)
T0 = vn(2021, 8, 2, 9)
BOOSTER = DoseKind.BOOSTER
AZ_AND_MIXES = ("comirnaty", "spikevax", "vaxzevria")


def status_at(
    record: VaccinationRecord, at: datetime, born: date = ADULT_BIRTH
) -> VaccinationStatus:
    return vaccination_status(record, born, at, CATALOGUE)


def two_az_doses() -> VaccinationRecord:
    record = new_record()
    give(record, "vaxzevria", T0)
    give(record, "vaxzevria", T0 + 28 * DAY)
    return record


class TestStatus:
    def test_unvaccinated(self) -> None:
        status = status_at(new_record(), T0)
        assert status.status is Status.UNVACCINATED
        assert status.doses == 0
        assert status.next_dose == NextDose(1, DoseKind.PRIMARY, T0.date(), tuple(PRODUCTS))
        assert not status.protected_on(T0.date())

    def test_partially_after_one_dose(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        status = status_at(record, T0 + DAY)
        assert status.status is Status.PARTIALLY_VACCINATED
        assert status.series_complete_on is None
        assert status.next_dose == NextDose(2, DoseKind.PRIMARY, date(2021, 8, 30), AZ_AND_MIXES)

    def test_fully_vaccinated_from_exactly_14_local_days_after_the_series(self) -> None:
        record = two_az_doses()
        completed = date(2021, 8, 30)
        just_before = vn(2021, 9, 12, 23, 59)
        from_midnight = vn(2021, 9, 13, 0, 0)
        before = status_at(record, just_before)
        assert before.status is Status.PARTIALLY_VACCINATED
        assert before.series_complete_on == completed
        assert before.protected_from == completed + 14 * DAY
        after = status_at(record, from_midnight)
        assert after.status is Status.FULLY_VACCINATED
        assert after.protected_on(date(2021, 9, 13))
        assert not after.protected_on(date(2021, 9, 12))
        assert after.next_dose == NextDose(
            3, BOOSTER, completed + 90 * DAY, ("comirnaty", "spikevax", "vaxzevria")
        )

    def test_a_moment_before_a_dose_ignores_it(self) -> None:
        record = two_az_doses()
        status = status_at(record, T0 + 27 * DAY)
        assert status.doses == 1
        assert status.status is Status.PARTIALLY_VACCINATED
        assert status_at(record, T0 - DAY).status is Status.UNVACCINATED

    def test_janssen_completes_with_one_dose(self) -> None:
        record = new_record()
        give(record, "janssen", T0)
        assert status_at(record, T0 + 13 * DAY).status is Status.PARTIALLY_VACCINATED
        status = status_at(record, T0 + 14 * DAY)
        assert status.status is Status.FULLY_VACCINATED
        assert status.next_dose is not None
        assert status.next_dose.kind is BOOSTER
        assert status.next_dose.earliest == T0.date() + 90 * DAY

    def test_abdala_is_partial_after_two_doses(self) -> None:
        record = new_record()
        give(record, "abdala", T0)
        give(record, "abdala", T0 + 14 * DAY)
        status = status_at(record, T0 + 60 * DAY)
        assert status.status is Status.PARTIALLY_VACCINATED
        assert status.next_dose == NextDose(3, DoseKind.PRIMARY, date(2021, 8, 30), ("abdala",))

    def test_boosted_and_then_nothing_more(self) -> None:
        record = two_az_doses()
        first = T0 + 118 * DAY
        give(record, "comirnaty", first, BOOSTER)
        status = status_at(record, first + DAY)
        assert status.status is Status.BOOSTED
        assert status.next_dose is not None
        assert status.next_dose.number == 4
        assert status.next_dose.earliest == first.date() + 90 * DAY
        give(record, "spikevax", first + 90 * DAY, BOOSTER)
        final = status_at(record, first + 100 * DAY)
        assert final.status is Status.BOOSTED
        assert final.doses == 4
        assert final.next_dose is None
        assert final.reasons == ("the primary series and the boosters are complete",)

    def test_voided_doses_do_not_count(self) -> None:
        record = two_az_doses()
        second = record.valid_doses[1]
        record.void_dose(second.dose_id, "recorded on the wrong person", STAFF)
        status = status_at(record, T0 + 60 * DAY)
        assert status.status is Status.PARTIALLY_VACCINATED
        assert status.doses == 1
        assert status.next_dose is not None
        assert status.next_dose.number == 2
        record.void_dose(record.valid_doses[0].dose_id, "wrong person", STAFF)
        assert status_at(record, T0 + 60 * DAY).status is Status.UNVACCINATED


class TestNextDose:
    def test_a_child_waits_for_the_birthday(self) -> None:
        born = date(2010, 3, 15)
        status = status_at(new_record(), T0, born)
        assert status.next_dose == NextDose(
            1, DoseKind.PRIMARY, date(2022, 3, 15), ("comirnaty", "spikevax")
        )
        assert status.reasons == ("old enough on 2022-03-15",)

    def test_a_teenager_may_have_the_products_for_12_and_over(self) -> None:
        status = status_at(new_record(), T0, date(2008, 1, 1))
        assert status.next_dose is not None
        assert status.next_dose.products == ("comirnaty", "spikevax")
        assert status.next_dose.earliest == T0.date()

    def test_contraindicated(self) -> None:
        record = new_record()
        record.screen(screening(ScreeningOutcome.CONTRAINDICATED, T0), STAFF)
        status = status_at(record, T0 + DAY)
        assert status.next_dose is None
        assert status.reasons == ("contraindicated at the last screening",)
        assert status_at(record, T0 - DAY).next_dose is not None

    def test_postponed(self) -> None:
        record = new_record()
        give(record, "vaxzevria", T0)
        record.screen(
            screening(ScreeningOutcome.POSTPONED, T0 + 20 * DAY, date(2021, 9, 10)), STAFF
        )
        status = status_at(record, T0 + 21 * DAY)
        assert status.next_dose is not None
        assert status.next_dose.earliest == date(2021, 9, 10)
        assert status.reasons == ("postponed until 2021-09-10",)

    def test_referred_to_hospital(self) -> None:
        record = new_record()
        record.screen(screening(ScreeningOutcome.REFER_TO_HOSPITAL, T0), STAFF)
        status = status_at(record, T0 + DAY)
        assert status.reasons == ("to be vaccinated in hospital under supervision",)

    def test_a_severe_reaction_removes_that_product(self) -> None:
        record = new_record()
        first = give(record, "vaxzevria", T0)
        record.report_adverse_event(adverse(first, Severity.SEVERE), T0 + DAY, STAFF)
        status = status_at(record, T0 + 2 * DAY)
        assert status.next_dose is not None
        assert status.next_dose.products == ("comirnaty", "spikevax")

    def test_no_product_left_after_a_severe_reaction(self) -> None:
        record = new_record()
        first = give(record, "comirnaty", T0)
        record.report_adverse_event(adverse(first, Severity.SEVERE), T0 + DAY, STAFF)
        status = status_at(record, T0 + 2 * DAY)
        assert status.next_dose is None
        assert status.reasons == ("no product is allowed after a severe adverse event",)


class TestRecovery:
    @pytest.mark.parametrize(
        ("day", "protected"),
        [(date(2021, 9, 1), True), (date(2022, 2, 28), True), (date(2022, 3, 1), False)],
    )
    def test_recovery_protects_for_180_days(self, day: date, protected: bool) -> None:
        record = new_record()
        record.record_recovery(date(2021, 9, 1), date(2021, 9, 5), STAFF)
        status = status_at(record, vn(2021, 9, 5))
        assert status.recovered_until == date(2021, 9, 1) + 180 * DAY == date(2022, 2, 28)
        assert status.status is Status.UNVACCINATED
        assert status.protected_on(day) is protected

    def test_vaccination_and_recovery_combine(self) -> None:
        record = two_az_doses()
        record.record_recovery(date(2021, 6, 1), date(2021, 9, 5), STAFF)
        status = status_at(record, vn(2021, 9, 5))
        assert status.protected_on(date(2021, 9, 1))
        assert status.protected_on(date(2021, 9, 13))
        assert status.protected_on(date(2030, 1, 1))
