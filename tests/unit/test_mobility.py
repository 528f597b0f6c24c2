"""Health declarations, checkpoint checks, and area risk levels."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from uuid import uuid4

import pytest

from domain.areas import AreaCode
from domain.errors import DeclarationInvalid, DeclarationNotFound, InvalidValue
from domain.mobility import (
    LONGEST_ADVANCE,
    CheckpointCheck,
    MobilityRecord,
    Symptom,
    Verdict,
)
from domain.mobility import TestKind as Kind
from domain.mobility import TestOutcome as Outcome
from domain.mobility import TestResult as LabResult
from domain.risk import AreaRisk, RiskLevel
from tests.unit.domain_builders import (
    ADMIN,
    HANOI,
    HCMC,
    OFFICER,
    declaration,
    national_id,
    utc,
    vn,
)

HOUR = timedelta(hours=1)
DECLARED = vn(2021, 10, 15, 8)


def new_mobility() -> MobilityRecord:
    return MobilityRecord(uuid4(), national_id(), OFFICER)


def check(declaration_id: object = None, checkpoint: str = "HN-CP-01") -> CheckpointCheck:
    return CheckpointCheck(
        checkpoint,
        DECLARED + HOUR,
        Verdict.PASS,
        ("valid declaration",),
        declaration_id,  # type: ignore[arg-type]
    )


class TestValidity:
    def test_valid_from_declaring_until_the_end_of_the_window(self) -> None:
        record = new_mobility()
        made = declaration(DECLARED)
        record.declare(made, OFFICER)
        assert record.declarations == {made.declaration_id: made}
        assert record.current_declaration(DECLARED - timedelta(microseconds=1)) is None
        assert record.current_declaration(DECLARED) == made
        assert record.current_declaration(DECLARED + 72 * HOUR - timedelta(microseconds=1)) == made
        assert record.current_declaration(DECLARED + 72 * HOUR) is None
        assert made.is_valid_at(DECLARED + 71 * HOUR)

    def test_the_latest_valid_declaration_is_current(self) -> None:
        record = new_mobility()
        first = declaration(DECLARED)
        second = declaration(DECLARED + 24 * HOUR)
        record.declare(second, OFFICER)
        record.declare(first, OFFICER)
        assert record.current_declaration(DECLARED + 30 * HOUR) == second
        assert record.current_declaration(DECLARED + 80 * HOUR) == second
        assert record.current_declaration(DECLARED + 2 * HOUR) == first

    def test_a_declaration_is_made_once(self) -> None:
        record = new_mobility()
        made = declaration(DECLARED)
        record.declare(made, OFFICER)
        with pytest.raises(DeclarationInvalid):
            record.declare(made, OFFICER)


class TestValidation:
    def test_origin_and_destination_differ(self) -> None:
        with pytest.raises(DeclarationInvalid) as caught:
            new_mobility().declare(declaration(DECLARED, destination=HCMC), OFFICER)
        assert caught.value.code == "declaration_invalid"
        new_mobility().declare(declaration(DECLARED, destination=AreaCode("079")), OFFICER)

    @pytest.mark.parametrize("hours", [0, -1])
    def test_valid_for_some_time(self, hours: int) -> None:
        with pytest.raises(DeclarationInvalid):
            new_mobility().declare(declaration(DECLARED, valid_for=hours * HOUR), OFFICER)

    def test_the_travel_date_is_not_in_the_past_by_the_local_day(self) -> None:
        declared = utc(2021, 10, 15, 18)  # 01:00 on 16 October in Vietnam
        with pytest.raises(DeclarationInvalid) as caught:
            new_mobility().declare(declaration(declared, date(2021, 10, 15)), OFFICER)
        assert caught.value.details == {"declared_on": "2021-10-16"}
        new_mobility().declare(declaration(declared, date(2021, 10, 16)), OFFICER)

    def test_at_most_seven_days_ahead(self) -> None:
        latest = DECLARED.date() + LONGEST_ADVANCE
        new_mobility().declare(declaration(DECLARED, latest), OFFICER)
        with pytest.raises(DeclarationInvalid) as caught:
            new_mobility().declare(declaration(DECLARED, latest + timedelta(days=1)), OFFICER)
        assert caught.value.details == {"latest_travel_date": "2021-10-22"}

    @pytest.mark.parametrize(("plate", "ok"), [("", False), ("X" * 17, False), ("X" * 16, True)])
    def test_vehicle_plates(self, plate: str, ok: bool) -> None:
        made = declaration(DECLARED, plate=plate)
        if ok:
            new_mobility().declare(made, OFFICER)
        else:
            with pytest.raises(DeclarationInvalid):
                new_mobility().declare(made, OFFICER)
        new_mobility().declare(declaration(DECLARED, plate=None), OFFICER)

    @pytest.mark.parametrize(
        ("sampled_before", "ok"),
        [
            (timedelta(0), True),
            (timedelta(days=7), True),
            (timedelta(days=7, seconds=1), False),
            (-timedelta(seconds=1), False),
        ],
    )
    def test_a_test_is_sampled_in_the_seven_days_before(
        self, sampled_before: timedelta, ok: bool
    ) -> None:
        test = LabResult(Kind.PCR, Outcome.NEGATIVE, DECLARED - sampled_before)
        made = replace(declaration(DECLARED), test=test)
        if ok:
            new_mobility().declare(made, OFFICER)
        else:
            with pytest.raises(DeclarationInvalid):
                new_mobility().declare(made, OFFICER)

    def test_what_flags_a_medical_check(self) -> None:
        plain = declaration(DECLARED)
        assert not plain.flags_medical_check
        assert replace(plain, symptoms=(Symptom.FEVER,)).flags_medical_check
        assert replace(plain, contact_with_confirmed_case=True).flags_medical_check
        assert not replace(plain, stayed_in_high_risk_area=True).flags_medical_check
        positive = LabResult(Kind.RAPID_ANTIGEN, Outcome.POSITIVE, DECLARED - HOUR)
        negative = replace(positive, outcome=Outcome.NEGATIVE)
        assert replace(plain, test=positive).flags_medical_check
        assert not replace(plain, test=negative).flags_medical_check


class TestChecks:
    def test_a_check_of_a_declaration(self) -> None:
        record = new_mobility()
        made = declaration(DECLARED)
        record.declare(made, OFFICER)
        done = check(made.declaration_id)
        record.record_check(done, OFFICER)
        record.record_check(check(None), OFFICER)
        assert record.checks == [done, check(None)]

    def test_the_declaration_must_be_this_persons(self) -> None:
        other = uuid4()
        with pytest.raises(DeclarationNotFound) as caught:
            new_mobility().record_check(check(other), OFFICER)
        assert caught.value.details == {"declaration_id": str(other)}

    def test_a_check_names_its_checkpoint(self) -> None:
        with pytest.raises(DeclarationInvalid):
            new_mobility().record_check(check(None, "  "), OFFICER)


class TestRiskLevels:
    def test_levels_and_colours(self) -> None:
        assert [level.colour for level in RiskLevel] == ["green", "yellow", "orange", "red"]

    def test_a_level_applies_from_its_effective_time(self) -> None:
        start = vn(2021, 10, 11, 0)
        risk = AreaRisk.assess(uuid4(), HANOI, RiskLevel.HIGH, start, "Resolution 128", ADMIN)
        assert risk.level_at(start - timedelta(seconds=1)) is None
        assert risk.level_at(start) is RiskLevel.HIGH

    def test_a_raise_announced_48_hours_ahead(self) -> None:
        start = vn(2021, 10, 11, 0)
        risk = AreaRisk.assess(uuid4(), HANOI, RiskLevel.MEDIUM, start, "first", ADMIN)
        announced = start + 24 * HOUR
        effective = announced + 48 * HOUR
        risk.reassess(RiskLevel.VERY_HIGH, effective, "new cluster", ADMIN)
        assert risk.level_at(announced) is RiskLevel.MEDIUM
        assert risk.level_at(effective - timedelta(seconds=1)) is RiskLevel.MEDIUM
        assert risk.level_at(effective) is RiskLevel.VERY_HIGH
        assert risk.level_at(effective + 1000 * HOUR) is RiskLevel.VERY_HIGH

    def test_a_late_entered_period_is_placed_in_time_order(self) -> None:
        start = vn(2021, 10, 11, 0)
        risk = AreaRisk.assess(uuid4(), HANOI, RiskLevel.HIGH, start, "first", ADMIN)
        risk.reassess(RiskLevel.LOW, start + 240 * HOUR, "cases down", ADMIN)
        risk.reassess(RiskLevel.MEDIUM, start + 120 * HOUR, "entered late", ADMIN)
        assert [p.level for p in risk.periods] == [RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW]
        assert risk.level_at(start + 130 * HOUR) is RiskLevel.MEDIUM
        assert risk.level_at(start + 250 * HOUR) is RiskLevel.LOW

    def test_a_level_needs_a_reason(self) -> None:
        start = vn(2021, 10, 11, 0)
        with pytest.raises(InvalidValue):
            AreaRisk.assess(uuid4(), HANOI, RiskLevel.HIGH, start, "  ", ADMIN)
        risk = AreaRisk.assess(uuid4(), HANOI, RiskLevel.HIGH, start, "ok", ADMIN)
        with pytest.raises(InvalidValue):
            risk.reassess(RiskLevel.LOW, start, "", ADMIN)
        assert len(risk.periods) == 1
