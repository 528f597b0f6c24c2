"""The population-register extract: one citizen per row, as NDJSON or CSV.

NDJSON has one JSON object per line; CSV has a header line naming the same fields, and
one record per physical line (no field spans lines). Both are UTF-8; a leading BOM is
ignored, and so are blank lines. Fields:

=============  ========  =============================================================
field          required  form
=============  ========  =============================================================
id_number      yes       the 12-digit CCCD, as a string (``"079098012345"``)
full_name      yes       family, middle and given names, with diacritics
date_of_birth  yes       ISO date ``YYYY-MM-DD``, from 1900-01-01 up to today
sex            yes       ``male`` or ``female``
residence      yes       area code ``PPP.DDD.WWWWW`` (province, district, ward)
phone          no        mobile, ``0`` + 9 digits, 2nd digit 3/5/7/8/9 (``0912345678``)
deceased_on    no        ISO date of death, not before birth nor after today
=============  ========  =============================================================

Optional fields may be absent, empty or JSON ``null``. Unknown fields are ignored.
Spaces, dots and dashes inside an ID or phone number are dropped, and a phone starting
``+84`` is rewritten with ``0``; names are NFC-normalised with whitespace collapsed.
A line longer than `MAX_LINE_LENGTH` is refused without being held in memory.

Example::

    {"id_number":"079198012345","full_name":"Nguyễn Thị Lan","date_of_birth":"1998-04-02",
     "sex":"female","residence":"079.760.26734","phone":"0912345678"}

`parse_row` turns one decoded row into a `RegisterEntry` or raises `RowRejected` with a
`Reason`; `read_rows` streams a whole file. Line numbers are physical line numbers
(in CSV the header is line 1).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from itertools import islice
from json.encoder import encode_basestring as _json_string
from typing import BinaryIO, Final, Literal, TextIO

from application.population import CitizenDetails
from domain.areas import PROVINCES, AreaCode
from domain.errors import InvalidIdNumber
from domain.identity import NationalId, Sex

RegisterFormat = Literal["ndjson", "csv"]

FIELDS: Final[tuple[str, ...]] = (
    "id_number",
    "full_name",
    "date_of_birth",
    "sex",
    "residence",
    "phone",
    "deceased_on",
)
REQUIRED_FIELDS: Final[frozenset[str]] = frozenset(FIELDS[:5])

MAX_LINE_LENGTH: Final = 4096
"""Bytes per line (characters when reading a text stream), not counting the line break."""

MAX_NAME_LENGTH: Final = 200
EARLIEST_DATE: Final = date(1900, 1, 1)

_DRAIN_CHUNK = 64 * 1024
_LINE_BREAKS: Final[tuple[str, bytes]] = ("\n", b"\n")


class Reason(StrEnum):
    """Why a row was refused. The values are stable and machine-readable."""

    BAD_ID_NUMBER = "bad_id_number"
    UNKNOWN_PROVINCE = "unknown_province"
    ID_CONTRADICTS_BIRTH = "id_contradicts_birth"
    MISSING_NAME = "missing_name"
    BAD_NAME = "bad_name"
    BAD_DATE = "bad_date"
    BAD_SEX = "bad_sex"
    BAD_RESIDENCE = "bad_residence"
    BAD_PHONE = "bad_phone"
    BAD_JSON = "bad_json"
    BAD_CSV = "bad_csv"
    BAD_ENCODING = "bad_encoding"
    LINE_TOO_LONG = "line_too_long"
    DUPLICATE_ID = "duplicate_id"
    """Raised by the importer: an ID seen earlier in the same file."""
    CONFLICTS_WITH_RECORD = "conflicts_with_record"
    """Raised by the importer: the register's record refuses the change (deceased, moved)."""


class RowRejected(Exception):
    """A register row that cannot be imported, with the line it came from."""

    def __init__(self, line_number: int, reason_code: Reason, message: str) -> None:
        super().__init__(f"line {line_number}: {reason_code}: {message}")
        self.line_number = line_number
        self.reason_code = reason_code
        self.message = message

    def __repr__(self) -> str:
        return f"RowRejected({self.line_number}, {self.reason_code.value!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One citizen as the population register states them, validated and normalised."""

    id_number: NationalId
    full_name: str
    date_of_birth: date
    sex: Sex
    residence: AreaCode
    phone: str | None = None
    deceased_on: date | None = None

    def details(self) -> CitizenDetails:
        """What registering this citizen takes (a death is recorded apart)."""
        return CitizenDetails(
            self.id_number,
            self.full_name,
            self.date_of_birth,
            self.sex,
            self.residence,
            self.phone,
        )

    def as_row(self) -> dict[str, str]:
        """The row in extract form; absent optional fields are left out."""
        row = {
            "id_number": self.id_number.value,
            "full_name": self.full_name,
            "date_of_birth": self.date_of_birth.isoformat(),
            "sex": self.sex.value,
            "residence": str(self.residence),
        }
        if self.phone is not None:
            row["phone"] = self.phone
        if self.deceased_on is not None:
            row["deceased_on"] = self.deceased_on.isoformat()
        return row


_ID_SEPARATORS = re.compile(r"[\s.-]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RESIDENCE = re.compile(r"(\d{3})\.(\d{3})\.(\d{5})")
_MOBILE = re.compile(r"0[35789]\d{8}")
_PHONE_SEPARATORS = re.compile(r"[\s.()-]")
_NOT_IN_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\d]")


def parse_row(
    raw: Mapping[str, object], line_number: int, *, today: date | None = None
) -> RegisterEntry:
    """Validate and normalise one row; raise `RowRejected` naming the first problem found."""
    today = today or date.today()
    id_number = _parse_id_number(raw.get("id_number"), line_number)
    full_name = _parse_name(raw.get("full_name"), line_number)
    date_of_birth = _parse_date(raw.get("date_of_birth"), "date_of_birth", today, line_number)
    if date_of_birth is None:
        raise RowRejected(line_number, Reason.BAD_DATE, "date_of_birth is missing")
    sex = _parse_sex(raw.get("sex"), line_number)
    try:
        id_number.check_against(date_of_birth, sex)
    except InvalidIdNumber as e:
        raise RowRejected(line_number, Reason.ID_CONTRADICTS_BIRTH, e.message) from None
    residence = _parse_residence(raw.get("residence"), line_number)
    phone = _parse_phone(raw.get("phone"), line_number)
    deceased_on = _parse_date(raw.get("deceased_on"), "deceased_on", today, line_number)
    if deceased_on is not None and deceased_on < date_of_birth:
        raise RowRejected(
            line_number, Reason.BAD_DATE, f"deceased_on {deceased_on} is before the date of birth"
        )
    return RegisterEntry(id_number, full_name, date_of_birth, sex, residence, phone, deceased_on)


def _parse_id_number(value: object, line_number: int) -> NationalId:
    if value is None or value == "":
        raise RowRejected(line_number, Reason.BAD_ID_NUMBER, "id_number is missing")
    if not isinstance(value, str):
        raise RowRejected(
            line_number,
            Reason.BAD_ID_NUMBER,
            "id_number must be a string: as a number it loses its leading 0",
        )
    digits = _ID_SEPARATORS.sub("", value)
    if not (len(digits) == 12 and digits.isascii() and digits.isdigit()):
        raise RowRejected(
            line_number,
            Reason.BAD_ID_NUMBER,
            f"an ID number has 12 digits and nothing else, got {value!r}",
        )
    if digits[:3] not in PROVINCES:
        raise RowRejected(
            line_number,
            Reason.UNKNOWN_PROVINCE,
            f"ID digits 1-3 ({digits[:3]}) are not a province code",
        )
    return NationalId(digits)


def _parse_name(value: object, line_number: int) -> str:
    if value is not None and not isinstance(value, str):
        raise RowRejected(
            line_number, Reason.BAD_NAME, f"full_name must be text, got {type(value).__name__}"
        )
    name = " ".join(unicodedata.normalize("NFC", value or "").split())
    if not name:
        raise RowRejected(line_number, Reason.MISSING_NAME, "full_name is missing or blank")
    if len(name) > MAX_NAME_LENGTH:
        raise RowRejected(
            line_number, Reason.BAD_NAME, f"full_name is longer than {MAX_NAME_LENGTH} characters"
        )
    if _NOT_IN_NAME.search(name):
        raise RowRejected(
            line_number, Reason.BAD_NAME, "full_name contains digits or control characters"
        )
    return name


def _parse_date(value: object, field: str, today: date, line_number: int) -> date | None:
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not _ISO_DATE.fullmatch(text):
        raise RowRejected(
            line_number, Reason.BAD_DATE, f"{field} must be an ISO date YYYY-MM-DD, got {value!r}"
        )
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise RowRejected(
            line_number, Reason.BAD_DATE, f"{field} {value!r} is not a calendar date"
        ) from None
    if parsed < EARLIEST_DATE:
        raise RowRejected(line_number, Reason.BAD_DATE, f"{field} {parsed} is before 1900")
    if parsed > today:
        raise RowRejected(line_number, Reason.BAD_DATE, f"{field} {parsed} is in the future")
    return parsed


def _parse_sex(value: object, line_number: int) -> Sex:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text == "female":
        return Sex.FEMALE
    if text == "male":
        return Sex.MALE
    raise RowRejected(line_number, Reason.BAD_SEX, f"sex must be 'male' or 'female', got {value!r}")


def _parse_residence(value: object, line_number: int) -> AreaCode:
    match = _RESIDENCE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise RowRejected(
            line_number,
            Reason.BAD_RESIDENCE,
            f"residence must be an area code PPP.DDD.WWWWW, got {value!r}",
        )
    province, district, ward = match.groups()
    if province not in PROVINCES:
        raise RowRejected(
            line_number, Reason.UNKNOWN_PROVINCE, f"residence province {province} is unknown"
        )
    return AreaCode(province, district, ward)


def _parse_phone(value: object, line_number: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RowRejected(
            line_number, Reason.BAD_PHONE, "phone must be a string: as a number it loses its 0"
        )
    phone = _PHONE_SEPARATORS.sub("", value)
    if phone.startswith("+84"):
        phone = "0" + phone[3:]
    if not phone:
        return None
    if not _MOBILE.fullmatch(phone):
        raise RowRejected(
            line_number,
            Reason.BAD_PHONE,
            f"phone must be a Vietnamese mobile number 0xxxxxxxxx, got {value!r}",
        )
    return phone


def read_lines(
    stream: BinaryIO | TextIO, max_line_length: int = MAX_LINE_LENGTH
) -> Iterator[tuple[int, str | RowRejected]]:
    """Each line without its line break, or a rejection for a line too long or not UTF-8.

    At most `max_line_length + 1` bytes (characters, for a text stream) of a line are held
    at once; the rest of a line that is too long is read in chunks and dropped.
    """
    line_number = 0
    while chunk := stream.readline(max_line_length + 1):
        line_number += 1
        if len(chunk) > max_line_length and chunk[-1:] not in _LINE_BREAKS:
            while (rest := stream.readline(_DRAIN_CHUNK)) and rest[-1:] not in _LINE_BREAKS:
                pass
            yield (
                line_number,
                RowRejected(
                    line_number, Reason.LINE_TOO_LONG, f"the line is over {max_line_length} bytes"
                ),
            )
            continue
        if isinstance(chunk, bytes):
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    line_number,
                    RowRejected(line_number, Reason.BAD_ENCODING, f"not UTF-8 at byte {e.start}"),
                )
                continue
        else:
            text = chunk
        if line_number == 1:
            text = text.removeprefix("\ufeff")
        yield line_number, text.rstrip("\r\n")


def read_rows(
    stream: BinaryIO | TextIO,
    fmt: RegisterFormat | None = None,
    *,
    max_line_length: int = MAX_LINE_LENGTH,
    today: date | None = None,
) -> Iterator[tuple[int, RegisterEntry | RowRejected]]:
    """Stream a register extract, one result per non-blank line (after a CSV header).

    With `fmt` None the format is taken from the first non-blank line: `{` means NDJSON,
    anything else CSV. A CSV header that is unreadable or lacks a required column gives
    one rejection and ends the file. Memory stays bounded by the line length limit.
    """
    today = today or date.today()
    lines = read_lines(stream, max_line_length)
    for line_number, line in lines:
        if isinstance(line, RowRejected):
            yield line_number, line
            if fmt == "csv":
                return
            continue
        if not line.strip():
            continue
        if fmt is None:
            fmt = "ndjson" if line.lstrip().startswith("{") else "csv"
        if fmt == "ndjson":
            yield line_number, _ndjson_row(line, line_number, today)
            yield from _ndjson_rows(lines, today)
        else:
            yield from _csv_rows(line_number, line, lines, today)
        return


def _ndjson_rows(
    lines: Iterator[tuple[int, str | RowRejected]], today: date
) -> Iterator[tuple[int, RegisterEntry | RowRejected]]:
    for line_number, line in lines:
        if isinstance(line, RowRejected):
            yield line_number, line
        elif line.strip():
            yield line_number, _ndjson_row(line, line_number, today)


def _ndjson_row(line: str, line_number: int, today: date) -> RegisterEntry | RowRejected:
    try:
        raw = json.loads(line)
    except ValueError as e:
        return RowRejected(line_number, Reason.BAD_JSON, f"not JSON: {e}")
    if not isinstance(raw, dict):
        return RowRejected(line_number, Reason.BAD_JSON, "a row must be a JSON object")
    try:
        return parse_row(raw, line_number, today=today)
    except RowRejected as e:
        return e


def _csv_rows(
    header_number: int,
    header_line: str,
    lines: Iterator[tuple[int, str | RowRejected]],
    today: date,
) -> Iterator[tuple[int, RegisterEntry | RowRejected]]:
    try:
        header = [name.strip().lower() for name in _csv_fields(header_line)]
    except csv.Error as e:
        yield header_number, RowRejected(header_number, Reason.BAD_CSV, f"not a CSV header: {e}")
        return
    missing = sorted(REQUIRED_FIELDS - set(header))
    if missing or len(set(header)) != len(header):
        problem = f"lacks {', '.join(missing)}" if missing else "repeats a column"
        yield (
            header_number,
            RowRejected(header_number, Reason.BAD_CSV, f"the CSV header {problem}"),
        )
        return
    for line_number, line in lines:
        if isinstance(line, RowRejected):
            yield line_number, line
            continue
        if not line.strip():
            continue
        try:
            values = _csv_fields(line)
        except csv.Error as e:
            yield line_number, RowRejected(line_number, Reason.BAD_CSV, f"not CSV: {e}")
            continue
        if len(values) != len(header):
            yield (
                line_number,
                RowRejected(
                    line_number,
                    Reason.BAD_CSV,
                    f"{len(values)} fields where the header has {len(header)}",
                ),
            )
            continue
        try:
            yield (
                line_number,
                parse_row(dict(zip(header, values, strict=True)), line_number, today=today),
            )
        except RowRejected as e:
            yield line_number, e


def _csv_fields(line: str) -> list[str]:
    return next(csv.reader((line,), strict=True), [])


def write_ndjson(rows: Iterable[Mapping[str, str]], out: TextIO) -> int:
    """Write rows as NDJSON (UTF-8 text, diacritics unescaped); return the row count."""
    count = 0
    rows = iter(rows)
    while batch := list(islice(rows, 4096)):
        out.writelines(map(_ndjson_line, batch))
        count += len(batch)
    return count


def _ndjson_line(row: Mapping[str, str]) -> str:
    pairs = map(":".join, zip(map(_json_string, row), map(_json_string, row.values()), strict=True))
    return "{" + ",".join(pairs) + "}\n"


def write_csv(rows: Iterable[Mapping[str, str]], out: TextIO) -> int:
    """Write a header and the rows as CSV with `FIELDS` as columns; return the row count."""
    writer = csv.DictWriter(out, fieldnames=FIELDS, restval="", lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
