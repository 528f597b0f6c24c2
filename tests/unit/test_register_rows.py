"""The register extract format: parsing one row, streaming files, limits and round trips."""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Iterator
from datetime import date
from typing import Any, BinaryIO, cast

import pytest

from domain.areas import AreaCode
from domain.identity import NationalId, Sex
from infrastructure.population.rows import (
    MAX_LINE_LENGTH,
    Reason,
    RegisterEntry,
    RowRejected,
    parse_row,
    read_lines,
    read_rows,
    write_csv,
    write_ndjson,
)

TODAY = date(2024, 1, 1)


def valid_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id_number": "079198012345",
        "full_name": "Nguyễn Thị Lan",
        "date_of_birth": "1998-04-02",
        "sex": "female",
        "residence": "079.760.26734",
        "phone": "0912345678",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def rejection(row: dict[str, Any], line_number: int = 7) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        parse_row(row, line_number, today=TODAY)
    assert caught.value.line_number == line_number
    return caught.value


def test_a_valid_row_becomes_a_typed_entry() -> None:
    entry = parse_row(valid_row(deceased_on="2022-05-01"), 1, today=TODAY)
    assert entry == RegisterEntry(
        id_number=NationalId("079198012345"),
        full_name="Nguyễn Thị Lan",
        date_of_birth=date(1998, 4, 2),
        sex=Sex.FEMALE,
        residence=AreaCode("079", "760", "26734"),
        phone="0912345678",
        deceased_on=date(2022, 5, 1),
    )


def test_names_are_nfc_with_whitespace_collapsed() -> None:
    decomposed = unicodedata.normalize("NFD", "  Nguyễn \t Thị   Lan ")
    entry = parse_row(valid_row(full_name=decomposed), 1, today=TODAY)
    assert entry.full_name == "Nguyễn Thị Lan"
    assert unicodedata.is_normalized("NFC", entry.full_name)


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+84 912 345 678", "0912345678"),
        ("0912.345.678", "0912345678"),
        ("", None),
        (None, None),
        (..., None),
    ],
)
def test_phone_is_normalised_or_absent(phone: object, expected: str | None) -> None:
    assert parse_row(valid_row(phone=phone), 1, today=TODAY).phone == expected


def test_separators_in_an_id_number_are_dropped() -> None:
    entry = parse_row(valid_row(id_number="079 198 012 345"), 1, today=TODAY)
    assert entry.id_number.value == "079198012345"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id_number": "07919801234"}, Reason.BAD_ID_NUMBER),
        ({"id_number": "0791980123456"}, Reason.BAD_ID_NUMBER),
        ({"id_number": "07919801234x"}, Reason.BAD_ID_NUMBER),
        ({"id_number": 79198012345}, Reason.BAD_ID_NUMBER),
        ({"id_number": ...}, Reason.BAD_ID_NUMBER),
        ({"id_number": "003198012345"}, Reason.UNKNOWN_PROVINCE),
        ({"residence": "003.760.26734"}, Reason.UNKNOWN_PROVINCE),
        ({"sex": "male"}, Reason.ID_CONTRADICTS_BIRTH),
        ({"date_of_birth": "1997-04-02"}, Reason.ID_CONTRADICTS_BIRTH),
        ({"date_of_birth": "2098-04-02"}, Reason.BAD_DATE),
        ({"full_name": ...}, Reason.MISSING_NAME),
        ({"full_name": " \t "}, Reason.MISSING_NAME),
        ({"full_name": None}, Reason.MISSING_NAME),
        ({"full_name": "Nguyễn Thị 3"}, Reason.BAD_NAME),
        ({"full_name": "Nguyễn\x00Lan"}, Reason.BAD_NAME),
        ({"full_name": ["Nguyễn"]}, Reason.BAD_NAME),
        ({"full_name": "Lan " * 60}, Reason.BAD_NAME),
        ({"date_of_birth": "1998-02-30"}, Reason.BAD_DATE),
        ({"date_of_birth": "02/04/1998"}, Reason.BAD_DATE),
        ({"date_of_birth": "19980402"}, Reason.BAD_DATE),
        ({"date_of_birth": ...}, Reason.BAD_DATE),
        ({"id_number": "079089012345", "date_of_birth": "1889-04-02", "sex": "male"},
         Reason.BAD_DATE),
        ({"id_number": "079325012345", "date_of_birth": "2025-01-01"}, Reason.BAD_DATE),
        ({"deceased_on": "1990-01-01"}, Reason.BAD_DATE),
        ({"deceased_on": "2030-01-01"}, Reason.BAD_DATE),
        ({"sex": "F"}, Reason.BAD_SEX),
        ({"sex": ...}, Reason.BAD_SEX),
        ({"residence": "079.760"}, Reason.BAD_RESIDENCE),
        ({"residence": "079-760-26734"}, Reason.BAD_RESIDENCE),
        ({"residence": "079.76.26734"}, Reason.BAD_RESIDENCE),
        ({"residence": ...}, Reason.BAD_RESIDENCE),
        ({"phone": "12345"}, Reason.BAD_PHONE),
        ({"phone": "0212345678"}, Reason.BAD_PHONE),
        ({"phone": 912345678}, Reason.BAD_PHONE),
    ],
)  # fmt: skip
def test_each_problem_has_its_reason(changes: dict[str, Any], reason: Reason) -> None:
    rejected = rejection(valid_row(**changes))
    assert rejected.reason_code is reason
    assert rejected.message


def test_a_contradicting_id_names_the_digit() -> None:
    assert "digit 4" in rejection(valid_row(sex="male")).message
    assert "digits 5-6" in rejection(valid_row(date_of_birth="1999-01-01")).message


def test_rejection_text_carries_line_and_reason() -> None:
    rejected = rejection(valid_row(sex="x"), line_number=42)
    assert str(rejected).startswith("line 42: bad_sex:")
    assert "bad_sex" in repr(rejected)
    assert str(Reason.DUPLICATE_ID) == "duplicate_id"


def test_ndjson_stream_reports_each_line() -> None:
    lines = [
        json.dumps(valid_row()),
        "",
        "{not json",
        "[1, 2]",
        json.dumps(valid_row(sex="nope")),
        json.dumps(valid_row(id_number="001098000001", sex="male")),
    ]
    results = list(read_rows(io.StringIO("\ufeff" + "\n".join(lines) + "\n"), today=TODAY))
    assert [n for n, _ in results] == [1, 3, 4, 5, 6]
    kinds = [r.reason_code if isinstance(r, RowRejected) else "ok" for _, r in results]
    assert kinds == ["ok", Reason.BAD_JSON, Reason.BAD_JSON, Reason.BAD_SEX, "ok"]


def test_csv_stream_with_header_extra_columns_and_quotes() -> None:
    text = (
        "id_number,full_name,date_of_birth,sex,residence,phone,deceased_on,note\n"
        '079198012345,"Nguyễn Thị Lan",1998-04-02,female,079.760.26734,,,"a, b"\n'
        "079198012345,Nguyễn Thị Lan,1998-04-02\n"
        '079198012345,"Nguyễn Thị Lan,1998-04-02,female,079.760.26734,,,\n'
        "\n"
        "001098000001,Lê Văn An,1998-01-01,male,001.001.00001,0351234567,,\n"
    )
    results = list(read_rows(io.BytesIO(text.encode()), today=TODAY))
    assert [n for n, _ in results] == [2, 3, 4, 6]
    first, short, unbalanced, last = (r for _, r in results)
    assert isinstance(first, RegisterEntry)
    assert first.phone is None
    assert first.deceased_on is None
    assert isinstance(short, RowRejected)
    assert short.reason_code is Reason.BAD_CSV
    assert isinstance(unbalanced, RowRejected)
    assert unbalanced.reason_code is Reason.BAD_CSV
    assert isinstance(last, RegisterEntry)
    assert last.phone == "0351234567"


def test_csv_header_without_required_columns_stops_the_file() -> None:
    text = "id_number,full_name,sex\n079198012345,Nguyễn Thị Lan,female\n"
    [(line, result)] = list(read_rows(io.StringIO(text), "csv", today=TODAY))
    assert line == 1
    assert isinstance(result, RowRejected)
    assert result.reason_code is Reason.BAD_CSV
    assert "date_of_birth" in result.message


def test_format_given_explicitly_wins_over_detection() -> None:
    text = json.dumps(valid_row()) + "\n"
    [(_, result)] = list(read_rows(io.StringIO(text), "csv", today=TODAY))
    assert isinstance(result, RowRejected)
    assert result.reason_code is Reason.BAD_CSV


def test_lines_that_are_not_utf8_are_refused() -> None:
    data = b'{"full_name": "\xff"}\n' + json.dumps(valid_row()).encode() + b"\n"
    results = list(read_rows(io.BytesIO(data), today=TODAY))
    assert isinstance(results[0][1], RowRejected)
    assert results[0][1].reason_code is Reason.BAD_ENCODING
    assert isinstance(results[1][1], RegisterEntry)


class _EndlessLine(io.RawIOBase):
    """`size` bytes of one line generated on demand, then a valid row."""

    def __init__(self, size: int, then: bytes) -> None:
        self.left = size
        self.then = then
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        self.largest_read = max(self.largest_read, len(view))
        if self.left:
            n = min(self.left, len(view))
            view[:n] = b"x" * n
            self.left -= n
            return n
        n = min(len(self.then), len(view))
        view[:n] = self.then[:n]
        self.then = self.then[n:]
        return n


def test_an_absurd_line_is_refused_without_buffering_it() -> None:
    row = json.dumps(valid_row()).encode() + b"\n"
    raw = _EndlessLine(10 * 1024 * 1024, b"\n" + row)
    stream = cast(BinaryIO, io.BufferedReader(raw, buffer_size=8192))
    results = list(read_rows(stream, "ndjson", today=TODAY))
    assert [n for n, _ in results] == [1, 2]
    assert isinstance(results[0][1], RowRejected)
    assert results[0][1].reason_code is Reason.LINE_TOO_LONG
    assert isinstance(results[1][1], RegisterEntry)
    assert raw.largest_read <= 64 * 1024


@pytest.mark.parametrize("as_bytes", [True, False])
def test_line_limit_is_exact(as_bytes: bool) -> None:
    limit = 50
    text = "a" * limit + "\n" + "b" * (limit + 1) + "\n" + "c" * limit
    stream: Any = io.BytesIO(text.encode()) if as_bytes else io.StringIO(text)
    lines = list(read_lines(stream, max_line_length=limit))
    assert lines[0] == (1, "a" * limit)
    assert isinstance(lines[1][1], RowRejected)
    assert lines[1][1].reason_code is Reason.LINE_TOO_LONG
    assert lines[2] == (3, "c" * limit)


def test_default_line_limit_accepts_real_rows_and_refuses_huge_ones() -> None:
    ok = json.dumps(valid_row(note="x" * 1000))
    huge = json.dumps(valid_row(note="x" * MAX_LINE_LENGTH))
    results = list(read_rows(io.StringIO(f"{ok}\n{huge}\n"), today=TODAY))
    assert isinstance(results[0][1], RegisterEntry)
    assert isinstance(results[1][1], RowRejected)
    assert results[1][1].reason_code is Reason.LINE_TOO_LONG


def _entries() -> Iterator[RegisterEntry]:
    yield parse_row(valid_row(), 1, today=TODAY)
    yield parse_row(
        valid_row(
            id_number="001049000002",
            full_name="Đỗ Hữu Phước",
            date_of_birth="1949-12-31",
            sex="male",
            residence="001.003.00042",
            phone=None,
            deceased_on="2021-08-15",
        ),
        2,
        today=TODAY,
    )


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_round_trip(fmt: str) -> None:
    entries = list(_entries())
    out = io.StringIO()
    writer = write_csv if fmt == "csv" else write_ndjson
    assert writer((e.as_row() for e in entries), out) == len(entries)
    data = io.BytesIO(out.getvalue().encode())
    parsed = [r for _, r in read_rows(data, today=TODAY) if isinstance(r, RegisterEntry)]
    assert parsed == entries


def test_ndjson_keeps_diacritics_readable() -> None:
    out = io.StringIO()
    write_ndjson([valid_row()], out)
    assert "Nguyễn Thị Lan" in out.getvalue()
    assert json.loads(out.getvalue()) == valid_row()


def test_spacing_in_a_name_is_normalised_away() -> None:
    entry = next(_entries())
    assert parse_row(valid_row(full_name=" Nguyễn  Thị Lan"), 1, today=TODAY) == entry
