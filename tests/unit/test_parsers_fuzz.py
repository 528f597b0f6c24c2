"""Every parser of outside input, fuzzed: a value or a named refusal, never a crash.

ID numbers, person ids, area codes, times and dates of request bodies, and the rows and
files of a population-register extract.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from api.http.schemas.commands import CitizenIn, DeclarationIn, DoseIn, RiskLevelIn
from domain.areas import AreaCode
from domain.clock import utc
from domain.errors import DomainError
from domain.identity import NationalId, Passport, parse_person_id
from infrastructure.population.rows import (
    MAX_LINE_LENGTH,
    RegisterEntry,
    RowRejected,
    parse_row,
    read_rows,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
id_like = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[0-9 .\-]{10,16}", fullmatch=True),
    st.from_regex(r"[0-9]{12}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{3}:[A-Za-z0-9 ]{4,14}", fullmatch=True),
)
area_like = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,4}(\.[0-9]{1,6})?)?", fullmatch=True),
)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=60),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
ROW_FIELDS = ("id_number", "full_name", "date_of_birth", "sex", "residence", "phone", "deceased_on")


@FUZZ
@given(id_like)
def test_national_id_parse_gives_an_id_or_a_domain_error(text: str) -> None:
    try:
        parsed = NationalId.parse(text)
    except DomainError:
        return
    assert len(parsed.value) == 12
    assert parsed.value.isdigit()
    assert NationalId.parse(parsed.value) == parsed


@FUZZ
@given(id_like)
def test_parse_person_id_gives_a_person_or_a_domain_error(text: str) -> None:
    try:
        person = parse_person_id(text)
    except DomainError:
        return
    assert isinstance(person, NationalId | Passport)
    assert parse_person_id(str(person)) == person


@FUZZ
@given(area_like)
def test_area_code_parse_gives_a_known_area_or_a_domain_error(text: str) -> None:
    try:
        area = AreaCode.parse(text)
    except DomainError:
        return
    assert AreaCode.parse(str(area)) == area
    assert area.province_name


offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
"""Fixed offsets, as ISO times in request bodies carry (zones with DST gaps never reach
`utc`: pydantic parses an offset)."""


@FUZZ
@given(st.datetimes(timezones=st.none() | offsets))
def test_every_stored_time_is_utc_or_refused(moment: datetime) -> None:
    try:
        stored = utc(moment)
    except DomainError:
        assert moment.utcoffset() is None
        return
    assert stored.tzinfo is UTC
    assert stored == moment


BODIES: dict[type[BaseModel], dict[str, Any]] = {
    CitizenIn: {
        "id_number": "079190123456",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1990-05-01",
        "sex": "female",
        "residence": "079.760.26734",
    },
    DoseIn: {
        "id_number": "079190123456",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1990-05-01",
        "product": "comirnaty",
        "lot": "PF1",
        "given_at": "2021-08-02T09:00:00+07:00",
        "site": "left_arm",
    },
    RiskLevelIn: {
        "area": "079",
        "level": 3,
        "effective_from": "2021-08-01T00:00:00+07:00",
        "reason": "cases",
    },
    DeclarationIn: {
        "id_number": "079190123456",
        "trip": {
            "origin": "079",
            "destination": "001",
            "travel_date": "2021-08-03",
            "transport": "car",
        },
    },
}
TIME_FIELDS = {
    CitizenIn: ("date_of_birth",),
    DoseIn: ("date_of_birth", "given_at"),
    RiskLevelIn: ("effective_from",),
}


@FUZZ
@given(
    st.sampled_from(sorted(TIME_FIELDS, key=lambda m: m.__name__)),
    st.data(),
    st.one_of(
        st.text(max_size=40),
        st.dates().map(date.isoformat),
        st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
        st.integers(),
        st.floats(),
    ),
)
def test_dates_and_times_in_bodies_parse_or_fail_validation(
    model: type[CitizenIn | DoseIn | RiskLevelIn], data: st.DataObject, value: object
) -> None:
    field = data.draw(st.sampled_from(TIME_FIELDS[model]))
    body = {**BODIES[model], field: value}
    try:
        parsed = model.model_validate(body)
    except ValidationError as error:
        errors = error.errors()
    else:
        moment = getattr(parsed, field)
        assert not isinstance(moment, datetime) or moment.utcoffset() is not None
        return
    assert errors
    assert all(e["loc"] for e in errors)


def test_a_naive_time_in_a_body_is_refused() -> None:
    with pytest.raises(ValidationError):
        DoseIn.model_validate({**BODIES[DoseIn], "given_at": "2021-08-02T09:00:00"})
    aware = DoseIn.model_validate(BODIES[DoseIn]).given_at
    assert aware.utcoffset() == timedelta(hours=7)
    assert utc(aware) == datetime(2021, 8, 2, 2, tzinfo=UTC)


@FUZZ
@given(st.dictionaries(st.sampled_from(ROW_FIELDS), field_values, max_size=len(ROW_FIELDS)))
def test_a_register_row_is_an_entry_or_a_rejection(raw: dict[str, object]) -> None:
    try:
        entry = parse_row(raw, 7, today=date(2024, 1, 1))
    except RowRejected as error:
        rejection = error
    else:
        assert date(1900, 1, 1) <= entry.date_of_birth <= date(2024, 1, 1)
        return
    assert rejection.line_number == 7
    assert rejection.reason_code


CSV_HEADER = b"id_number,full_name,date_of_birth,sex,residence,phone\n"
NDJSON_LINE = json.dumps({"id_number": 1}).encode() + b"\n"


@FUZZ
@given(
    st.sampled_from([b"", CSV_HEADER, NDJSON_LINE]),
    st.lists(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)), max_size=8),
)
def test_a_register_file_of_any_bytes_yields_entries_or_rejections(
    head: bytes, lines: list[bytes]
) -> None:
    """Any lines, after a CSV header, an NDJSON line or nothing."""
    stream = io.BytesIO(head + b"\n".join(lines))
    results = list(read_rows(stream, today=date(2024, 1, 1)))
    assert all(isinstance(r, RegisterEntry | RowRejected) for _, r in results)
    numbers = [n for n, _ in results]
    assert numbers == sorted(numbers)


@pytest.mark.parametrize("data", [b"\r\x00\n", b'id_number,"full_name\n'])
def test_an_unreadable_csv_header_is_one_rejection(data: bytes) -> None:
    results = list(read_rows(io.BytesIO(data), today=date(2024, 1, 1)))
    assert len(results) == 1
    assert isinstance(results[0][1], RowRejected)


VALID_ROW = {
    "id_number": "079190123456",
    "full_name": "Nguyễn Thị Lan",
    "date_of_birth": "1990-05-01",
    "sex": "female",
    "residence": "079.760.26734",
}


@FUZZ
@given(st.sampled_from(ROW_FIELDS), field_values)
def test_one_bad_field_in_an_ndjson_file_rejects_only_its_line(field: str, value: object) -> None:
    bad = json.dumps({**VALID_ROW, field: value}, default=str)
    good = json.dumps(VALID_ROW)
    stream = io.BytesIO(f"{good}\n{bad}\n{good}\n".encode())
    results = list(read_rows(stream, "ndjson", today=date(2024, 1, 1)))
    assert [n for n, _ in results] == [1, 2, 3]
    assert isinstance(results[0][1], RegisterEntry)
    assert isinstance(results[2][1], RegisterEntry)


def test_a_line_over_the_limit_is_refused_without_being_held() -> None:
    huge = b'{"full_name": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    good = json.dumps(VALID_ROW).encode()
    results = list(read_rows(io.BytesIO(good + b"\n" + huge + b"\n" + good), "ndjson"))
    assert [n for n, _ in results] == [1, 2, 3]
    rejected = results[1][1]
    assert isinstance(rejected, RowRejected)
    assert str(MAX_LINE_LENGTH) in str(rejected)
    assert isinstance(results[2][1], RegisterEntry)


def test_a_csv_header_without_required_columns_is_one_rejection() -> None:
    results = list(read_rows(io.BytesIO(b"name,phone\nLan,0912345678\n"), "csv"))
    assert len(results) == 1
    assert isinstance(results[0][1], RowRejected)
