"""Statistics counters: what each citizen contributes, and per-event checkpoint counts.

Keys (hashes of counters)::

    sd:<local day>    <province>|<product>          doses given that day
    sp                <province>|<age band>|<m>     people: m = first (at least one
                                                    dose), complete (series), booster
    sc:<local day>    <checkpoint>|<what>           declarations ("declared") and
                                                    verdicts of checks at a checkpoint

A citizen's contribution is a function of their state, so a correction, a void, a moved
record or a corrected birth date moves counters by the difference between the old and
the new contribution. Provinces are the residence's; age bands are the age on the day
of the dose counted. A counter may rest at 0: readers treat 0 as absent.
"""

from __future__ import annotations

from datetime import date
from operator import attrgetter

from domain.clock import local_day
from domain.vaccines import Catalogue
from projections.models.state import CitizenState, from_us

AGE_BANDS = ((0, "0-11"), (12, "12-17"), (18, "18-49"), (50, "50-64"), (65, "65+"))
MILESTONES = ("first", "complete", "booster")
UNKNOWN = "unknown"
_GIVEN_AT = attrgetter("given_at")

Contribution = dict[tuple[str, str], int]
"""Counter (key, field) -> what a citizen adds to it."""


def age_band(date_of_birth: date | None, day: date) -> str:
    if date_of_birth is None:
        return UNKNOWN
    age = (
        day.year
        - date_of_birth.year
        - ((day.month, day.day) < (date_of_birth.month, date_of_birth.day))
    )
    band = AGE_BANDS[0][1]
    for lowest, name in AGE_BANDS:
        if age >= lowest:
            band = name
    return band


def contribution(state: CitizenState, catalogue: Catalogue) -> Contribution:
    out: Contribution = {}
    if state.record_moved or not state.doses:
        return out
    province = state.province or UNKNOWN
    dob = state.dob
    doses = sorted(state.doses, key=_GIVEN_AT)
    days = [local_day(from_us(dose.given_at)) for dose in doses]
    for dose, day in zip(doses, days, strict=True):
        given = ("sd:" + day.isoformat(), f"{province}|{dose.product}")
        out[given] = out.get(given, 0) + 1
    out[("sp", f"{province}|{age_band(dob, days[0])}|first")] = 1
    # Every dose is given by then, as at the last dose: the same series completion, and
    # the moment the other read models ask the memoised status for.
    status = state.status_at(max(state.seen, doses[-1].given_at), catalogue)
    if status is not None and status.series_complete_on is not None:
        day = status.series_complete_on
        out[("sp", f"{province}|{age_band(dob, day)}|complete")] = 1
    first_booster = next((day for d, day in zip(doses, days, strict=True) if d.booster), None)
    if first_booster is not None:
        out[("sp", f"{province}|{age_band(dob, first_booster)}|booster")] = 1
    return out


def difference(old: Contribution, new: Contribution) -> dict[tuple[str, str], int]:
    """Increments turning the old contribution into the new one."""
    if not old:
        return {k: v for k, v in new.items() if v}
    changes = {k: new.get(k, 0) - old.get(k, 0) for k in old.keys() | new.keys()}
    return {k: v for k, v in changes.items() if v}


def coverage(counters: dict[str, int]) -> dict[str, dict[str, dict[str, float]]]:
    """``sp`` counters as province -> age band -> first/complete/booster/dropout.

    Dropout is (first - complete) / first, computed here, at read time.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for field, count in counters.items():
        province, band, milestone = field.split("|")
        row = out.setdefault(province, {}).setdefault(band, dict.fromkeys(MILESTONES, 0))
        row[milestone] = count
    for bands in out.values():
        for row in bands.values():
            first = row["first"]
            row["dropout"] = round((first - row["complete"]) / first, 4) if first else 0.0
    return out
