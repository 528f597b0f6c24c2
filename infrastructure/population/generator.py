"""A synthetic national population register, realistic enough to benchmark and test imports.

Provinces of birth are weighted by population, ages follow Vietnam's age pyramid
(median about 32), names follow Vietnamese naming, and ID digits 4-6 agree with sex and
birth year. The 6-digit serial is a keyed permutation of a counter per (province,
century/sex, year) bucket, so IDs are unique by construction and memory stays bounded
whatever the count. Output depends only on the arguments: each stream of choices comes
from its own `random.Random`, seeded from the seed.

Injected errors come from a separate stream, so the rows that are not corrupted are the
same whatever `error_rate` is, and `injected_errors` can say where the errors are without
generating the rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Final, TypeVar

from domain.areas import PROVINCES
from domain.identity import Sex, century_sex_digit
from infrastructure.population.names import (
    FAMILY_NAMES,
    FEMALE_GIVEN_NAMES,
    FEMALE_MIDDLE_NAMES,
    MALE_GIVEN_NAMES,
    MALE_MIDDLE_NAMES,
)
from infrastructure.population.rows import Reason, RegisterFormat

REGISTER_DATE: Final = date(2021, 7, 1)
"""The default extract date: the national population database went live on 1 July 2021."""

ERROR_KINDS: Final[tuple[Reason, ...]] = (
    Reason.BAD_ID_NUMBER,
    Reason.ID_CONTRADICTS_BIRTH,
    Reason.MISSING_NAME,
    Reason.UNKNOWN_PROVINCE,
    Reason.DUPLICATE_ID,
)

SERIALS_PER_BUCKET = 1_000_000
"""IDs available per (birth province, century/sex digit, birth year)."""

# (first age, end age exclusive, per cent of the population); Vietnam, 2019-2021.
AGE_BANDS: Final[tuple[tuple[int, int, float], ...]] = (
    (0, 5, 8.4),
    (5, 10, 8.7),
    (10, 15, 7.4),
    (15, 20, 6.9),
    (20, 25, 7.0),
    (25, 30, 8.0),
    (30, 35, 8.5),
    (35, 40, 8.0),
    (40, 45, 7.2),
    (45, 50, 6.5),
    (50, 55, 5.9),
    (55, 60, 5.2),
    (60, 65, 4.3),
    (65, 70, 3.1),
    (70, 75, 1.8),
    (75, 80, 1.3),
    (80, 85, 1.0),
    (85, 90, 0.6),
    (90, 95, 0.25),
    (95, 101, 0.09),
)

SHARE_FEMALE: Final = 0.503
SHARE_LIVING_IN_BIRTH_PROVINCE: Final = 0.8
SHARE_OF_ADULTS_WITH_PHONE: Final = 0.85
ADULT_AGE: Final = 18
DEATHS_REPORTED_WITHIN_DAYS: Final = 730
# (from age, share of the register deceased)
DECEASED_SHARE_BY_AGE: Final[tuple[tuple[int, float], ...]] = (
    (0, 0.001),
    (40, 0.005),
    (60, 0.02),
    (75, 0.08),
)
MOBILE_PREFIXES: Final[tuple[str, ...]] = (
    "032", "033", "034", "035", "036", "037", "038", "039", "056", "058", "059",
    "070", "076", "077", "078", "079", "081", "082", "083", "084", "085", "086",
    "088", "089", "090", "091", "093", "094", "096", "097", "098",
)  # fmt: skip
FIRST_SOUTHERN_PROVINCE: Final = "049"
"""From Quảng Nam southwards, Hoàng is spelled Huỳnh and Vũ is spelled Võ."""

_DAYS_PER_YEAR = 365.2425
_RECENT_IDS = 1024
_WEIGHTED_RETRIES = 20

_PROVINCE_CODES: Final = tuple(sorted(PROVINCES))
_NOT_PROVINCE_CODES: Final = tuple(f"{n:03d}" for n in range(100) if f"{n:03d}" not in PROVINCES)


def _residences(codes: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Plausible `PPP.DDD.WWWWW` codes per province: districts numbered nationally in
    province order (more for populous provinces), 8-20 wards each, ward codes spaced out
    nationally as the official ones are."""
    district = 0
    ward = 0
    result = []
    for code in codes:
        areas = []
        for _ in range(min(30, max(6, round(PROVINCES[code].population_thousands / 150)))):
            district += 1
            for _ in range(8 + district * 7 % 13):
                ward += 3
                areas.append(f"{code}.{district:03d}.{ward:05d}")
        result.append(tuple(areas))
    return tuple(result)


_RESIDENCES: Final = _residences(_PROVINCE_CODES)


class _Serials:
    """Hands out the 6-digit serials of each ID bucket, in an order keyed by the seed.

    Serial = a 3-round Feistel permutation of (counter + bucket offset) mod 10^6, so the
    first `SERIALS_PER_BUCKET` IDs of a bucket never collide.
    """

    def __init__(self, rng: random.Random) -> None:
        self.capacity = SERIALS_PER_BUCKET
        self.rounds = tuple(tuple(rng.randrange(1000) for _ in range(1000)) for _ in range(3))
        self.offset = rng.randrange(1_000_000)
        self.taken: dict[str, list[int]] = {}

    def take(self, prefix: str) -> str | None:
        """A fresh ID starting with the 6-digit `prefix`, or None when the bucket is full."""
        state = self.taken.get(prefix)
        if state is None:
            state = self.taken[prefix] = [0, (int(prefix) * 7919 + self.offset) % 1_000_000]
        if state[0] >= self.capacity:
            return None
        high, low = divmod((state[0] + state[1]) % 1_000_000, 1000)
        state[0] += 1
        r0, r1, r2 = self.rounds
        high, low = low, (high + r0[low]) % 1000
        high, low = low, (high + r1[low]) % 1000
        high, low = low, (high + r2[low]) % 1000
        return prefix + _THREE_DIGITS[high] + _THREE_DIGITS[low]


_T = TypeVar("_T")
_THREE_DIGITS: Final = tuple(f"{n:03d}" for n in range(1000))


def _weighted(choices: Iterable[tuple[_T, float]], scale: float) -> tuple[_T, ...]:
    """A table to index with `int(random() * len(table))`: each choice appears
    weight * scale times (weights are exact at that resolution)."""
    return tuple(item for item, weight in choices for _ in range(round(weight * scale)))


def _given_names(
    middles: tuple[tuple[str, float], ...], givens: tuple[str, ...]
) -> tuple[str, ...]:
    """'Middle Given' pairs, weighted by the middle name; never the same word twice."""
    pairs = []
    for middle, weight in middles:
        for i, given in enumerate(givens):
            if given == middle:
                given = givens[(i + 1) % len(givens)]
            pairs.extend([f"{middle} {given}"] * round(weight))
    return tuple(pairs)


_BIRTH_PROVINCES: Final = _weighted(
    ((i, PROVINCES[c].population_thousands) for i, c in enumerate(_PROVINCE_CODES)), 1
)
_AGE_BANDS: Final = _weighted(((i, share) for i, (_, _, share) in enumerate(AGE_BANDS)), 100)
_FAMILY_NAMES: Final = (
    _weighted(((north, w) for north, _, w in FAMILY_NAMES), 10),
    _weighted(((south, w) for _, south, w in FAMILY_NAMES), 10),
)
_OTHER_NAMES: Final = (
    _given_names(MALE_MIDDLE_NAMES, MALE_GIVEN_NAMES),
    _given_names(FEMALE_MIDDLE_NAMES, FEMALE_GIVEN_NAMES),
)
_SOUTHERN: Final = tuple(c >= FIRST_SOUTHERN_PROVINCE for c in _PROVINCE_CODES)
_DECEASED_SHARE_BY_BAND: Final = tuple(
    next(share for age, share in reversed(DECEASED_SHARE_BY_AGE) if age <= lo)
    for lo, _, _ in AGE_BANDS
)


@dataclass(frozen=True)
class _Calendar:
    """Per-day lookups for everyone alive on `as_of`: index 0 is the earliest birth date."""

    first_day: int
    days: tuple[date, ...]
    iso: tuple[str, ...]
    year: tuple[int, ...]
    id_digits: tuple[tuple[str, ...], tuple[str, ...]]
    """Digits 4-6 of the ID for a man, a woman, born that day."""


@lru_cache(maxsize=4)
def _calendar(as_of: date) -> _Calendar:
    today = as_of.toordinal()
    first_day = today - int(AGE_BANDS[-1][1] * _DAYS_PER_YEAR) - 1
    days = tuple(date.fromordinal(d) for d in range(first_day, today + 1))
    digits = {
        (year, sex): f"{century_sex_digit(year, sex)}{year % 100:02d}"
        for year in range(days[0].year, as_of.year + 1)
        for sex in Sex
    }
    return _Calendar(
        first_day=first_day,
        days=days,
        iso=tuple(d.isoformat() for d in days),
        year=tuple(d.year for d in days),
        id_digits=(
            tuple(digits[d.year, Sex.MALE] for d in days),
            tuple(digits[d.year, Sex.FEMALE] for d in days),
        ),
    )


def _error_plan(count: int, seed: int, error_rate: float) -> Iterator[Reason | None]:
    """The injected error kind of each row in turn (None for a valid row)."""
    rng = random.Random(f"{seed}:errors")
    any_valid = False
    for _ in range(count):
        if error_rate > 0 and rng.random() < error_rate:
            kind = ERROR_KINDS[rng.randrange(len(ERROR_KINDS))]
            yield Reason.MISSING_NAME if kind is Reason.DUPLICATE_ID and not any_valid else kind
        else:
            any_valid = True
            yield None


def injected_errors(
    count: int, seed: int, error_rate: float, fmt: RegisterFormat = "ndjson"
) -> dict[int, Reason]:
    """Line number -> error kind of every corrupted row `generate_register` would write.

    The kind is the `Reason` the row is expected to be refused with; `duplicate_id` rows
    parse and are left to the importer, which sees the same ID on an earlier line.
    """
    first_line = 2 if fmt == "csv" else 1
    return {
        line: kind
        for line, kind in enumerate(_error_plan(count, seed, error_rate), start=first_line)
        if kind is not None
    }


def generate_register(
    count: int, seed: int, error_rate: float = 0.0, *, as_of: date = REGISTER_DATE
) -> Iterator[dict[str, str]]:
    """`count` raw register rows (see `rows`), ready for `write_ndjson` or `write_csv`."""
    return map(itemgetter(0), generate_rows(count, seed, error_rate, as_of=as_of))


def generate_rows(
    count: int, seed: int, error_rate: float = 0.0, *, as_of: date = REGISTER_DATE
) -> Iterator[tuple[dict[str, str], Reason | None]]:
    """Each raw row with the kind of error injected into it, or None."""
    if count < 0 or not 0.0 <= error_rate <= 1.0:
        raise ValueError("count must be >= 0 and error_rate within 0-1")
    rnd = random.Random(seed).random
    detail = random.Random(f"{seed}:details")
    serials = _Serials(random.Random(f"{seed}:serials"))
    take = serials.take
    calendar = _calendar(as_of)
    iso_days, id_digits = calendar.iso, calendar.id_digits
    today = as_of.toordinal() - calendar.first_day
    death_window_start = today - DEATHS_REPORTED_WITHIN_DAYS
    adult_days = ADULT_AGE * _DAYS_PER_YEAR
    age_start = [lo * _DAYS_PER_YEAR for lo, _, _ in AGE_BANDS]
    age_span = [(hi - lo) * _DAYS_PER_YEAR for lo, hi, _ in AGE_BANDS]
    provinces, n_provinces = _BIRTH_PROVINCES, len(_BIRTH_PROVINCES)
    codes, residences, southern = _PROVINCE_CODES, _RESIDENCES, _SOUTHERN
    ages, n_ages = _AGE_BANDS, len(_AGE_BANDS)
    families = _FAMILY_NAMES
    n_families = (len(families[0]), len(families[1]))
    other_names = _OTHER_NAMES
    n_other_names = (len(other_names[0]), len(other_names[1]))
    phone_prefixes, n_phone_prefixes = MOBILE_PREFIXES, len(MOBILE_PREFIXES)
    deceased_share = _DECEASED_SHARE_BY_BAND
    plan = repeat(None, count) if error_rate == 0 else _error_plan(count, seed, error_rate)

    may_repeat = error_rate > 0
    recent: list[tuple[str, str, int]] = []
    for index, kind in enumerate(plan):
        female = rnd() < SHARE_FEMALE
        band = ages[int(rnd() * n_ages)]
        age_days = int(age_start[band] + rnd() * age_span[band])
        day = today - age_days
        birth = provinces[int(rnd() * n_provinces)]
        id_number = take(codes[birth] + id_digits[female][day])
        if id_number is None:
            birth, id_number = _id_elsewhere(serials, id_digits[female][day], rnd)
        living = (
            birth if rnd() < SHARE_LIVING_IN_BIRTH_PROVINCE else provinces[int(rnd() * n_provinces)]
        )
        wards = residences[living]
        south = southern[birth]
        sex = "female" if female else "male"
        row = {
            "id_number": id_number,
            "full_name": families[south][int(rnd() * n_families[south])]
            + " "
            + other_names[female][int(rnd() * n_other_names[female])],
            "date_of_birth": iso_days[day],
            "sex": sex,
            "residence": wards[int(rnd() * len(wards))],
        }
        if age_days >= adult_days and rnd() < SHARE_OF_ADULTS_WITH_PHONE:
            number = int(rnd() * n_phone_prefixes * 10_000_000)
            row["phone"] = f"{phone_prefixes[number // 10_000_000]}{number % 10_000_000:07d}"
        if rnd() < deceased_share[band]:
            since = max(day, death_window_start)
            row["deceased_on"] = iso_days[since + int(rnd() * (today - since + 1))]
        if kind is not None:
            _corrupt(row, kind, detail, recent, calendar.days[day], as_of)
        elif may_repeat:
            if len(recent) < _RECENT_IDS:
                recent.append((id_number, sex, calendar.year[day]))
            else:
                recent[index % _RECENT_IDS] = (id_number, sex, calendar.year[day])
        yield row, kind


def _id_elsewhere(serials: _Serials, id_digits: str, rnd: Callable[[], float]) -> tuple[int, str]:
    """An ID in another birth province when the drawn one's bucket is full: a few weighted
    draws, then the first province with room."""
    for _ in range(_WEIGHTED_RETRIES):
        birth = _BIRTH_PROVINCES[int(rnd() * len(_BIRTH_PROVINCES))]
        if (id_number := serials.take(_PROVINCE_CODES[birth] + id_digits)) is not None:
            return birth, id_number
    for birth, code in enumerate(_PROVINCE_CODES):
        if (id_number := serials.take(code + id_digits)) is not None:
            return birth, id_number
    raise ValueError(f"every ID with digits 4-6 {id_digits} is taken")


def _corrupt(
    row: dict[str, str],
    kind: Reason,
    rng: random.Random,
    recent: list[tuple[str, str, int]],
    born: date,
    as_of: date,
) -> None:
    """Damage `row` so that it is refused with `kind` and for no other reason."""
    id_number = row["id_number"]
    if kind is Reason.BAD_ID_NUMBER:
        row["id_number"] = id_number[:-1] if rng.random() < 0.5 else id_number + "0"
    elif kind is Reason.UNKNOWN_PROVINCE:
        row["id_number"] = rng.choice(_NOT_PROVINCE_CODES) + id_number[3:]
    elif kind is Reason.MISSING_NAME:
        match rng.randrange(3):
            case 0:
                del row["full_name"]
            case 1:
                row["full_name"] = ""
            case _:
                row["full_name"] = "   "
    elif kind is Reason.ID_CONTRADICTS_BIRTH:
        if rng.random() < 0.5:
            row["sex"] = "male" if row["sex"] == "female" else "female"
        else:
            years_back = rng.randint(1, 9)
            day = 28 if born.month == 2 and born.day == 29 else born.day
            row["date_of_birth"] = born.replace(year=born.year - years_back, day=day).isoformat()
    elif kind is Reason.DUPLICATE_ID:
        start = rng.randrange(len(recent))
        earlier_id, sex, year = next(
            (entry for entry in recent[start:] + recent[:start] if entry[1] == row["sex"]),
            recent[start],
        )
        last = min(date(year, 12, 31), as_of).toordinal()
        row["id_number"] = earlier_id
        row["sex"] = sex
        row["date_of_birth"] = date.fromordinal(
            rng.randint(date(year, 1, 1).toordinal(), last)
        ).isoformat()
        row.pop("deceased_on", None)
