"""The checkpoint verdict policy: ordered rules as data, applied to facts by a pure function.

The default policy (`data/checkpoint_policy.json`) says: no valid declaration gives
``no_declaration``; declared symptoms, contact or a positive test give ``medical_check``;
an origin at level 3-4 without protection (full vaccination or recovery) or a negative
test in the last 72 hours gives ``quarantine``; anything else ``pass``. The first rule
whose ``if_any`` holds and none of whose ``unless_any`` holds decides; its reasons are
the conditions of ``if_any`` that held.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from domain.mobility import Verdict
from domain.risk import RiskLevel

CONDITIONS = frozenset(
    {
        "no_valid_declaration",
        "symptoms",
        "contact_with_confirmed_case",
        "stayed_in_high_risk_area",
        "positive_test",
        "origin_high_risk",
        "protected",
        "recent_negative_test",
    }
)


@dataclass(frozen=True)
class Facts:
    """What is known about a traveller at one moment."""

    has_declaration: bool
    symptoms: bool = False
    contact_with_confirmed_case: bool = False
    stayed_in_high_risk_area: bool = False
    positive_test: bool = False
    origin_level: int | None = None
    protected: bool = False
    recent_negative_test: bool = False

    def holds(self, condition: str, policy: Policy) -> bool:
        if condition == "no_valid_declaration":
            return not self.has_declaration
        if condition == "origin_high_risk":
            return self.origin_level in policy.high_risk_levels
        value: bool = getattr(self, condition)
        return value


@dataclass(frozen=True)
class Rule:
    verdict: Verdict
    if_any: tuple[str, ...]
    unless_any: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    otherwise: Verdict
    high_risk_levels: frozenset[int]
    negative_test_hours: float


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """A policy from its JSON form; unknown conditions, verdicts or risk levels, and test
    hours that are not a finite number of zero or more, are refused."""
    rules = []
    for row in data["rules"]:
        rule = Rule(
            Verdict(row["verdict"]),
            tuple(row["if_any"]),
            tuple(row.get("unless_any", ())),
        )
        unknown = set(rule.if_any + rule.unless_any) - CONDITIONS
        if unknown or not rule.if_any:
            raise ValueError(f"rule {row!r}: unknown or missing conditions {sorted(unknown)}")
        rules.append(rule)
    levels = frozenset(RiskLevel(int(level)).value for level in data["high_risk_levels"])
    hours = float(data["negative_test_hours"])
    if not 0 <= hours < math.inf:
        raise ValueError(f"negative_test_hours must be a finite number of 0 or more, not {hours}")
    return Policy(tuple(rules), Verdict(data["otherwise"]), levels, hours)


def load_policy(path: Path | None = None) -> Policy:
    """The policy in `path`, or the default one shipped with the domain."""
    if path is None:
        text = resources.files("domain").joinpath("data/checkpoint_policy.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return parse_policy(json.loads(text))


def decide(policy: Policy, facts: Facts) -> tuple[Verdict, tuple[str, ...]]:
    """The verdict and its reasons under `policy`."""
    for rule in policy.rules:
        held = tuple(c for c in rule.if_any if facts.holds(c, policy))
        if held and not any(facts.holds(c, policy) for c in rule.unless_any):
            return rule.verdict, held
    return policy.otherwise, ()


DEFAULT_POLICY = load_policy()
