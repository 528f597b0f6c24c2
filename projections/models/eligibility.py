"""Eligibility for the next dose, derived when asked from a citizen's kept state.

Served as::

    {"next_dose":2,"kind":"primary","earliest":"2021-08-23","products":["comirnaty"],
     "reasons":[],"eligible_now":false}

The status it reads is the one after the citizen's last event, as for the other read
models; "eligible now" is decided for the day asked. ``next_dose`` is null when no dose
is due (series and boosters complete, contraindicated, no product allowed); ``reasons``
say why. Nothing of it is stored: it is not on the hot path, and the state it derives
from is.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.vaccines import Catalogue
from projections.models.state import CitizenState


def eligibility(state: CitizenState, catalogue: Catalogue, today: date) -> dict[str, Any] | None:
    """The eligibility document; None when unknown (no birth date), gone or moved."""
    if state.gone or state.record_moved:
        return None
    status = state.status_at(max([state.seen, *(d.given_at for d in state.doses)]), catalogue)
    if status is None:
        return None
    nxt = status.next_dose
    return {
        "next_dose": nxt.number if nxt else None,
        "kind": nxt.kind.value if nxt else None,
        "earliest": nxt.earliest.isoformat() if nxt else None,
        "products": list(nxt.products) if nxt else [],
        "reasons": list(status.reasons),
        "eligible_now": nxt is not None and nxt.earliest <= today,
    }
