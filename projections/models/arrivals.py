"""Arrivals: declared travellers from level 3-4 areas, per destination province and district.

``a:<destination>`` is a sorted set of ``<origin>|<pseudonym (16 bytes)>`` scored by the
declaration's end of validity (microseconds). A declaration is kept while its origin is
at a high level at some moment of its validity, as far as the known risk levels say;
readers ask for scores after now and keep the members whose origin is at a high level
now, so expiry and levels taking effect apply at the exact time.
"""

from __future__ import annotations

from domain.checkpoint_policy import Policy
from projections.models.checkpoint import RiskBook, level_at, risk_moments, split_area
from projections.models.state import CitizenState

Entry = tuple[str, bytes, float]
"""(logical key, member, score) of a sorted set."""


def arrival_member(origin: str, pseudonym: str) -> bytes:
    return origin.encode() + b"|" + bytes.fromhex(pseudonym)


def parse_arrival(member: bytes) -> tuple[str, str]:
    """(origin, pseudonym) of an arrival member."""
    return member[:-17].decode(), member[-16:].hex()


def arrival_entries(
    pseudonym: str, state: CitizenState, risk: RiskBook, policy: Policy
) -> set[Entry]:
    d = state.declaration
    if d is None or state.gone:
        return set()
    moments = [d.declared_at] + [
        m for m in risk_moments(risk, d.origin) if d.declared_at < m < d.valid_until
    ]
    if not any(level_at(risk, d.origin, m) in policy.high_risk_levels for m in moments):
        return set()
    province, district = split_area(d.destination)
    member = arrival_member(d.origin, pseudonym)
    return {(f"a:{area}", member, float(d.valid_until)) for area in (province, district) if area}
