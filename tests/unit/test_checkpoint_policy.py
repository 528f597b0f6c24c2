"""The checkpoint verdict policy as data, and the pure function applying it."""

from __future__ import annotations

import pytest

from domain.checkpoint_policy import DEFAULT_POLICY, Facts, decide, parse_policy
from domain.mobility import Verdict


def test_no_valid_declaration_comes_first() -> None:
    facts = Facts(has_declaration=False, symptoms=True, origin_level=4)
    assert decide(DEFAULT_POLICY, facts) == (Verdict.NO_DECLARATION, ("no_valid_declaration",))


@pytest.mark.parametrize("flag", ["symptoms", "contact_with_confirmed_case", "positive_test"])
def test_symptoms_or_exposure_need_a_medical_check(flag: str) -> None:
    facts = Facts(has_declaration=True, protected=True, **{flag: True})
    assert decide(DEFAULT_POLICY, facts) == (Verdict.MEDICAL_CHECK, (flag,))


@pytest.mark.parametrize(
    ("level", "protected", "tested", "verdict"),
    [
        (3, False, False, Verdict.QUARANTINE),
        (4, False, False, Verdict.QUARANTINE),
        (4, True, False, Verdict.PASS),
        (4, False, True, Verdict.PASS),
        (2, False, False, Verdict.PASS),
        (None, False, False, Verdict.PASS),
    ],
)
def test_high_risk_origins_need_protection_or_a_recent_negative_test(
    level: int | None, protected: bool, tested: bool, verdict: Verdict
) -> None:
    facts = Facts(
        has_declaration=True, origin_level=level, protected=protected, recent_negative_test=tested
    )
    assert decide(DEFAULT_POLICY, facts)[0] is verdict


def test_a_policy_is_data() -> None:
    strict = parse_policy(
        {
            "high_risk_levels": [2, 3, 4],
            "negative_test_hours": 48,
            "rules": [{"verdict": "quarantine", "if_any": ["origin_high_risk"]}],
            "otherwise": "pass",
        }
    )
    assert strict.negative_test_hours == 48
    facts = Facts(has_declaration=True, origin_level=2, protected=True)
    assert decide(strict, facts) == (Verdict.QUARANTINE, ("origin_high_risk",))
    assert decide(DEFAULT_POLICY, facts) == (Verdict.PASS, ())


def test_unknown_conditions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        parse_policy(
            {
                "high_risk_levels": [3],
                "negative_test_hours": 72,
                "rules": [{"verdict": "pass", "if_any": ["lucky"]}],
                "otherwise": "pass",
            }
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"high_risk_levels": [3, 9]}, "9 is not a valid RiskLevel"),
        ({"negative_test_hours": float("nan")}, "finite number of 0 or more, not nan"),
        ({"negative_test_hours": float("inf")}, "finite number of 0 or more, not inf"),
        ({"negative_test_hours": -5}, "finite number of 0 or more, not -5"),
    ],
)
def test_risk_levels_and_test_hours_out_of_range_are_refused(
    change: dict[str, object], message: str
) -> None:
    policy = {
        "high_risk_levels": [3, 4],
        "negative_test_hours": 72,
        "rules": [{"verdict": "quarantine", "if_any": ["origin_high_risk"]}],
        "otherwise": "pass",
    }
    with pytest.raises(ValueError, match=message):
        parse_policy({**policy, **change})
