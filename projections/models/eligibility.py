"""Eligibility for the next dose, stored as computed; "eligible now" is decided at read time.

Stored per citizen (third part of the citizen's value) as compact JSON::

    {"next_dose":2,"kind":"primary","earliest":"2021-08-23","products":["comirnaty"],
     "reasons":[]}

``next_dose`` is null when no dose is due (series and boosters complete, contraindicated,
no product allowed); ``reasons`` say why.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from domain.vaccines import Catalogue
from projections.models.state import CitizenState


def eligibility(state: CitizenState, catalogue: Catalogue) -> bytes:
    """The stored eligibility of a citizen; empty when unknown (no birth date) or gone."""
    if state.gone or state.record_moved:
        return b""
    status = state.status_at(max([state.seen, *(d.given_at for d in state.doses)]), catalogue)
    if status is None:
        return b""
    nxt = status.next_dose
    out: dict[str, Any] = {
        "next_dose": nxt.number if nxt else None,
        "kind": nxt.kind.value if nxt else None,
        "earliest": nxt.earliest.isoformat() if nxt else None,
        "products": list(nxt.products) if nxt else [],
        "reasons": list(status.reasons),
    }
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def render(stored: bytes, today: date) -> dict[str, Any]:
    """The eligibility document served: the stored one with ``eligible_now`` for `today`."""
    data: dict[str, Any] = json.loads(stored)
    earliest = data["earliest"]
    data["eligible_now"] = earliest is not None and date.fromisoformat(earliest) <= today
    return data
