"""Eligibility for the next dose, stored as computed; "eligible now" is decided at read time.

Stored per citizen (third part of the citizen's value) as a positional JSON array
(next dose, kind, earliest as a day number, products, reasons; trailing empty values
left out), served by :func:`render` as::

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
from projections.models.state import CitizenState, from_days, to_days, trimmed


def eligibility(state: CitizenState, catalogue: Catalogue) -> bytes:
    """The stored eligibility of a citizen; empty when unknown (no birth date) or gone."""
    if state.gone or state.record_moved:
        return b""
    status = state.status_at(max([state.seen, *(d.given_at for d in state.doses)]), catalogue)
    if status is None:
        return b""
    nxt = status.next_dose
    out = trimmed(
        [
            nxt.number if nxt else None,
            nxt.kind.value if nxt else None,
            to_days(nxt.earliest.isoformat()) if nxt else None,
            list(nxt.products) if nxt else [],
            list(status.reasons),
        ]
    )
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def render(stored: bytes, today: date) -> dict[str, Any]:
    """The eligibility document served: the stored one with ``eligible_now`` for `today`."""
    raw: list[Any] = json.loads(stored)
    number, kind, days, products, reasons = raw + [None] * (5 - len(raw))
    earliest = from_days(days)
    return {
        "next_dose": number,
        "kind": kind,
        "earliest": earliest,
        "products": products or [],
        "reasons": reasons or [],
        "eligible_now": earliest is not None and date.fromisoformat(earliest) <= today,
    }
