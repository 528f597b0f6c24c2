"""Work lists of medical units: who awaits a first dose, and whose next dose is due.

``wf:<unit>`` holds ``<pseudonym>|<latest screening outcome or ->`` of people registered
at the unit and not yet vaccinated, scored by registration (or screening) time;
``wd:<unit>`` holds ``<pseudonym>|<dose number>`` of people whose primary series is
incomplete, at the unit of their last dose, scored by the start of the day the next dose
is due. A due day before today (at read time) is overdue.
"""

from __future__ import annotations

from domain.doses import DoseKind
from domain.vaccines import Catalogue
from projections.models.arrivals import Entry
from projections.models.state import CitizenState, day_start_us


def worklist_entries(pseudonym: str, state: CitizenState, catalogue: Catalogue) -> set[Entry]:
    if state.gone or state.record_moved:
        return set()
    if not state.doses:
        if state.registered is None:
            return set()
        unit, registered_at = state.registered
        s = state.screening
        screened = s is not None and s.unit == unit and s.screened_at >= registered_at
        outcome = s.outcome if s is not None and screened else "-"
        score = s.screened_at if s is not None and screened else registered_at
        return {(f"wf:{unit}", f"{pseudonym}|{outcome}".encode(), float(score))}
    last = max(state.doses, key=lambda d: d.given_at)
    status = state.status_at(max(state.seen, last.given_at), catalogue)
    nxt = status.next_dose if status else None
    if nxt is None or nxt.kind is not DoseKind.PRIMARY:
        return set()
    member = f"{pseudonym}|{nxt.number}".encode()
    return {(f"wd:{last.unit}", member, float(day_start_us(nxt.earliest)))}
