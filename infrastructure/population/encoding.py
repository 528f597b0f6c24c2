"""Turning a chunk of extract lines into what an import batch writes, in a few flat blobs.

A row whose every field is already in its stored form (the form the register's extracts
take) is checked with precompiled lookups and encoded without domain objects: its
`Registered` (and `Died`) event's stored state is filled into a template cut from an
event the application's mapper encoded, so the bytes are the transcoder's own. Any other
row takes the reference path (`rows.read_rows`, the `Citizen` aggregate and the mapper),
which also names the reason a row is refused. Both paths give the same events.

The result of a chunk is an `EncodedChunk`: line numbers, citizen ids, field hashes and
the events as binary COPY tuples, each concatenated, so that handing it to another
process copies a few buffers rather than pickling objects per row.
"""

from __future__ import annotations

import io
import json
import re
import struct
import time
import unicodedata
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from json.encoder import encode_basestring
from typing import Final, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Mapper

from application.ids import IdDeriver
from application.population import PopulationApp
from domain.areas import PROVINCES, AreaCode
from domain.base import Actor, Clock, recording_clock, utc_now
from domain.citizen import Citizen
from domain.errors import DomainError, InvalidIdNumber, InvalidValue, UnknownArea
from domain.identity import NationalId, Sex
from infrastructure.population.index import CitizenValues, FieldHasher
from infrastructure.population.rows import (
    EARLIEST_DATE,
    FIELDS,
    Reason,
    RegisterEntry,
    RegisterFormat,
    RowRejected,
    read_rows,
)

ID_BYTES: Final = 16
HASH_BYTES: Final = 48

_MAX_FAST_NAME: Final = 100
_RESIDENCE: Final = re.compile(r"[0-9]{3}\.[0-9]{3}\.[0-9]{5}")
_MOBILE: Final = re.compile(r"0[35789][0-9]{8}")
_TUPLE_HEAD: Final = struct.pack(">hi", 4, ID_BYTES)
_LENGTH: Final = struct.Struct(">i")

PROBE_BYTES: Final = 111
"""The size of a row's tuple of the PostgreSQL import's batch table (see `EncodedChunk`)."""
_PROBE_HEAD: Final = struct.Struct(">hiqi")
_HASH_LENGTH: Final = _LENGTH.pack(8)
_STATES_DEATH: Final = (struct.pack(">i?", 1, False), struct.pack(">i?", 1, True))


class Rejected(NamedTuple):
    line: int
    reason: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "reason": self.reason, "message": self.message}


class Chunk(NamedTuple):
    """Consecutive lines of the extract; `data` holds them with their line breaks."""

    first_line: int
    data: bytes
    rejected: tuple[Rejected, ...]

    def line(self, number: int) -> bytes:
        """The text of line `number`, without its line break."""
        return self.data.split(b"\n", number - self.first_line + 1)[number - self.first_line]


class EncodedChunk(NamedTuple):
    """A chunk's valid rows, in line order, as parallel flat blobs."""

    rejected: tuple[Rejected, ...]
    lines: array[int]
    ids: bytes
    """16 bytes per row: the citizen's aggregate id."""
    hashes: bytes
    """48 bytes per row: `FieldHasher.digests` of the row's values."""
    deaths: bytes
    """One byte per row: 1 when the row states a date of death."""
    probes: bytes
    """`PROBE_BYTES` per row: the row as a binary COPY tuple of the PostgreSQL import's
    batch table (line, citizen id, the six hashes, whether it states a death)."""
    events: bytes
    """Each row's events as a new citizen, as binary COPY tuples of the event table's
    (originator_id, originator_version, topic, state)."""
    event_ends: array[int]
    """Where each row's events end in `events`."""
    timings: dict[str, float]


def event_tuple(citizen_id: bytes, version: int, topic: str, state: bytes) -> bytes:
    """One stored event as a binary COPY tuple of the event table's four written columns."""
    return b"".join(
        (_TUPLE_HEAD, citizen_id, _event_meta(version, topic), _LENGTH.pack(len(state)), state)
    )


def event_fields(data: bytes) -> Iterator[tuple[bytes, int, str, bytes]]:
    """The (originator_id, version, topic, state) of each tuple `event_tuple` made."""
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        offset += 6
        citizen_id = bytes(view[offset : offset + ID_BYTES])
        offset += ID_BYTES + 4
        (version,) = struct.unpack_from(">q", data, offset)
        (topic_length,) = _LENGTH.unpack_from(data, offset + 8)
        offset += 12
        topic = bytes(view[offset : offset + topic_length]).decode()
        offset += topic_length
        (state_length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        yield citizen_id, version, topic, bytes(view[offset : offset + state_length])
        offset += state_length


def _event_meta(version: int, topic: str) -> bytes:
    encoded = topic.encode()
    return struct.pack(">iqi", 8, version, len(encoded)) + encoded


class _StateTemplate:
    """The stored JSON of one kind of event with its varying values cut out.

    It is cut from a sample event the transcoder encoded: each sentinel value is found
    exactly once (as the JSON string the transcoder wrote) and becomes a numbered
    `str.format` field. A verbatim field keeps its quotes in the template and takes text
    that needs no JSON escaping; any other field takes a whole JSON value.
    """

    def __init__(self, encoded: str, sentinels: Sequence[tuple[str, bool]]) -> None:
        text = encoded.replace("{", "{{").replace("}", "}}")
        for number, (sentinel, verbatim) in enumerate(sentinels):
            quoted = encode_basestring(sentinel)
            if text.count(quoted) != 1:
                raise ValueError(f"the sample event does not hold {quoted} exactly once")
            text = text.replace(quoted, f'"{{{number}}}"' if verbatim else f"{{{number}}}")
        self.fill = text.format


class _RegistrationTemplates:
    """`Registered` and `Died` stored JSON for the importing actor, from the transcoder."""

    _AT = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    _PERSON = "001190987654"
    _NAME = "Qqsentinel Zzsentinel"
    _BIRTH = date(1990, 3, 4)
    _RESIDENCE = AreaCode("002", "345", "67890")
    _PHONE = "0399999991"
    _DEATH = date(2000, 5, 6)

    def __init__(self, mapper: Mapper[UUID], actor: Actor) -> None:
        with recording_clock(lambda: self._AT):
            citizen = Citizen.register(
                UUID(int=1),
                NationalId(self._PERSON),
                self._NAME,
                self._BIRTH,
                Sex.FEMALE,
                self._RESIDENCE,
                self._PHONE,
                today=self._DEATH,
                actor=actor,
            )
            citizen.record_death(self._DEATH, actor, self._DEATH)
        plain = Mapper[UUID](mapper.transcoder)
        registered, died = map(plain.to_stored_event, citizen.collect_events())
        at = self._AT.isoformat()
        area = self._RESIDENCE
        self.registered = _StateTemplate(
            registered.state.decode(),
            (
                (at, True),
                (self._PERSON, True),
                (self._NAME, False),
                (self._BIRTH.isoformat(), True),
                (Sex.FEMALE.value, True),
                (area.province, True),
                (str(area.district), True),
                (str(area.ward), True),
                (self._PHONE, False),
            ),
        )
        self.died = _StateTemplate(
            died.state.decode(), ((at, True), (self._DEATH.isoformat(), True))
        )
        self.registered_meta = _event_meta(registered.originator_version, registered.topic)
        self.died_meta = _event_meta(died.originator_version, died.topic)


class _Rows:
    """What a chunk's valid rows add up to, before it is packed into an `EncodedChunk`."""

    def __init__(self) -> None:
        self.lines: list[int] = []
        self.ids: list[bytes] = []
        self.texts: list[tuple[str, str, str, str, str, str]] = []
        self.events: list[bytes] = []

    def add(
        self,
        line: int,
        citizen_id: bytes,
        texts: tuple[str, str, str, str, str, str],
        events: bytes,
    ) -> None:
        self.lines.append(line)
        self.ids.append(citizen_id)
        self.texts.append(texts)
        self.events.append(events)

    def sort(self) -> None:
        """Put the rows in line order (the reference path adds its rows last)."""
        order = sorted(range(len(self.lines)), key=self.lines.__getitem__)
        self.lines = [self.lines[i] for i in order]
        self.ids = [self.ids[i] for i in order]
        self.texts = [self.texts[i] for i in order]
        self.events = [self.events[i] for i in order]


Plain = tuple[str, str, str, str, str, str | None, str | None]
"""A row in stored form: id number, name, birth, sex, residence, phone, death (ISO)."""


class ChunkEncoder:
    """Parses, checks and encodes chunks of one extract for one importing actor."""

    def __init__(
        self,
        mapper: Mapper[UUID],
        ids: IdDeriver,
        hasher: FieldHasher,
        today: date,
        actor: Actor,
        clock: Clock,
        fmt: RegisterFormat,
        header: bytes,
    ) -> None:
        self.mapper = mapper
        self.ids = ids
        self.hasher = hasher
        self.today = today
        self.actor = actor
        self.clock = clock
        self.fmt = fmt
        self.header = header
        try:
            self._templates: _RegistrationTemplates | None = _RegistrationTemplates(mapper, actor)
        except ValueError:
            self._templates = None
        self._sealed = mapper.compressor is not None or mapper.cipher is not None
        days = (today - EARLIEST_DATE).days + 1
        self._days = frozenset((EARLIEST_DATE + timedelta(n)).isoformat() for n in range(days))
        self._id_digits = {
            (str(year), sex.value): _id_digits(year, sex)
            for year in range(EARLIEST_DATE.year, today.year + 1)
            for sex in Sex
        }
        self._csv_width, self._csv_columns = _csv_columns(header) if fmt == "csv" else (0, {})

    def encode(self, chunk: Chunk) -> EncodedChunk:
        """Every row of the chunk: valid rows in the blobs, the others rejected."""
        timings = {"parse": 0.0, "encode": 0.0, "hash": 0.0, "reference_path": 0.0}
        rows = _Rows()
        rejected = list(chunk.rejected)
        started = time.perf_counter()
        plain, odd = self._plain_rows(chunk) if self._templates else ([], _lines_of(chunk))
        parsed = time.perf_counter()
        self._encode_plain(plain, rows)
        encoded = time.perf_counter()
        for line, data in odd:
            self._encode_reference(line, data, rows, rejected)
        referenced = time.perf_counter()
        if odd:
            rows.sort()
        digests = self.hasher.digests
        probe_head = _PROBE_HEAD.pack
        hashes: list[bytes] = []
        probes: list[bytes] = []
        for line, citizen_id, texts in zip(rows.lines, rows.ids, rows.texts, strict=True):
            row_digests = digests(citizen_id, texts)
            hashes.append(b"".join(row_digests))
            probes.append(
                probe_head(9, 8, line, ID_BYTES)
                + citizen_id
                + _HASH_LENGTH
                + _HASH_LENGTH.join(row_digests)
                + _STATES_DEATH[texts[5] != ""]
            )
        hashed = time.perf_counter()
        timings["parse"] = parsed - started
        timings["encode"] = encoded - parsed
        timings["reference_path"] = referenced - encoded
        timings["hash"] = hashed - referenced
        rejected.sort(key=lambda r: r.line)
        return EncodedChunk(
            tuple(rejected),
            array("q", rows.lines),
            b"".join(rows.ids),
            b"".join(hashes),
            bytes(1 if t[5] else 0 for t in rows.texts),
            b"".join(probes),
            b"".join(rows.events),
            array("Q", accumulate(map(len, rows.events))),
            timings,
        )

    # Rows in stored form

    def _plain_rows(self, chunk: Chunk) -> tuple[list[tuple[int, Plain]], list[tuple[int, bytes]]]:
        """The rows that are plainly valid, and (line, bytes) of every other non-blank line."""
        plain: list[tuple[int, Plain]] = []
        odd: list[tuple[int, bytes]] = []
        try:
            lines = chunk.data.decode().split("\n")
        except UnicodeDecodeError:
            return plain, _lines_of(chunk)
        check = self._plain
        decode = self._decode_csv if self.fmt == "csv" else _decode_json
        for number, text in enumerate(lines, chunk.first_line):
            if not text or text.isspace():
                continue
            raw = decode(text)
            row = check(raw) if raw is not None else None
            if row is None:
                odd.append((number, text.encode()))
            else:
                plain.append((number, row))
        return plain, odd

    def _decode_csv(self, text: str) -> dict[str, object] | None:
        if '"' in text or "\r" in text.rstrip("\r"):
            return None
        values = text.rstrip("\r").split(",")
        if len(values) != self._csv_width:
            return None
        return {name: values[i] for name, i in self._csv_columns.items()}

    def _plain(self, raw: dict[str, object]) -> Plain | None:
        """The row's fields when each is already in its stored form and valid, else None.

        None sends the row to the reference path, which decides (or names the problem).
        """
        person = raw.get("id_number")
        name = raw.get("full_name")
        birth = raw.get("date_of_birth")
        sex = raw.get("sex")
        residence = raw.get("residence")
        phone = raw.get("phone")
        death = raw.get("deceased_on")
        if not (
            type(person) is str
            and type(name) is str
            and type(birth) is str
            and type(sex) is str
            and type(residence) is str
            and len(person) == 12
            and person.isascii()
            and person.isdigit()
            and person[:3] in PROVINCES
            and birth in self._days
            and self._id_digits.get((birth[:4], sex)) == person[3:6]
            and _RESIDENCE.fullmatch(residence)
            and residence[:3] in PROVINCES
        ):
            return None
        if phone == "":
            phone = None
        elif phone is not None and not (type(phone) is str and _MOBILE.fullmatch(phone)):
            return None
        if death == "":
            death = None
        elif death is not None and not (
            type(death) is str and death in self._days and death >= birth
        ):
            return None
        name = " ".join(unicodedata.normalize("NFC", name).split())
        if not (0 < len(name) <= _MAX_FAST_NAME and name.replace(" ", "").isalpha()):
            return None
        return person, name, birth, sex, residence, phone, death

    def _encode_plain(self, plain: list[tuple[int, Plain]], rows: _Rows) -> None:
        if not plain or self._templates is None:
            return
        at = self.clock().isoformat()
        templates = self._templates
        registered = templates.registered.fill
        died = templates.died.fill
        registered_meta = templates.registered_meta
        died_meta = templates.died_meta
        citizen_bytes = self.ids.citizen_bytes
        length = _LENGTH.pack
        head = _TUPLE_HEAD
        seal = self._seal if self._sealed else None
        for line, (person, name, birth, sex, residence, phone, death) in plain:
            citizen_id = citizen_bytes(person)
            state = registered(
                at,
                person,
                encode_basestring(name),
                birth,
                sex,
                residence[:3],
                residence[4:7],
                residence[8:],
                f'"{phone}"' if phone else "null",
            ).encode()
            if seal is not None:
                state = seal(state)
            events = head + citizen_id + registered_meta + length(len(state)) + state
            if death is not None:
                state = died(at, death).encode()
                if seal is not None:
                    state = seal(state)
                events += head + citizen_id + died_meta + length(len(state)) + state
            rows.add(
                line, citizen_id, (name, birth, sex, residence, phone or "", death or ""), events
            )

    def _seal(self, state: bytes) -> bytes:
        """Compress and encrypt as the mapper does."""
        if self.mapper.compressor is not None:
            state = self.mapper.compressor.compress(state)
        if self.mapper.cipher is not None:
            state = self.mapper.cipher.encrypt(state)
        return state

    # The reference path

    def _encode_reference(
        self, line: int, data: bytes, rows: _Rows, rejected: list[Rejected]
    ) -> None:
        source = (self.header if self.fmt == "csv" else b"") + data + b"\n"
        for _, row in read_rows(io.BytesIO(source), self.fmt, today=self.today):
            if isinstance(row, RowRejected):
                rejected.append(Rejected(line, row.reason_code.value, row.message))
            else:
                outcome = self._register(line, row)
                if isinstance(outcome, Rejected):
                    rejected.append(outcome)
                else:
                    rows.add(line, *outcome)

    def _register(
        self, line: int, entry: RegisterEntry
    ) -> tuple[bytes, tuple[str, str, str, str, str, str], bytes] | Rejected:
        """A new citizen's events, made by the aggregate and encoded by the mapper."""
        citizen_id = self.ids.citizen(entry.id_number)
        with recording_clock(self.clock):
            try:
                citizen = Citizen.register(
                    citizen_id,
                    entry.id_number,
                    entry.full_name,
                    entry.date_of_birth,
                    entry.sex,
                    entry.residence,
                    entry.phone,
                    today=self.today,
                    actor=self.actor,
                )
            except DomainError as error:
                return Rejected(line, registration_reason(error).value, error.message)
            if entry.deceased_on is not None:
                try:
                    citizen.record_death(entry.deceased_on, self.actor, self.today)
                except DomainError as error:
                    return Rejected(line, Reason.BAD_DATE.value, error.message)
        events = b"".join(
            event_tuple(citizen_id.bytes, e.originator_version, e.topic, e.state)
            for e in map(self.mapper.to_stored_event, citizen.collect_events())
        )
        values = CitizenValues.of(citizen)
        return citizen_id.bytes, values.texts(), events


def registration_reason(error: DomainError) -> Reason:
    """The row reason for a refusal of `Citizen.register` (or of a correction)."""
    if isinstance(error, InvalidIdNumber):
        return Reason.ID_CONTRADICTS_BIRTH
    if isinstance(error, UnknownArea):
        return Reason.BAD_RESIDENCE
    if isinstance(error, InvalidValue):
        field_name = error.details.get("field")
        if field_name == "full_name":
            return Reason.BAD_NAME
        if field_name == "date_of_birth":
            return Reason.BAD_DATE
    return Reason.BAD_PHONE


def _lines_of(chunk: Chunk) -> list[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line of the chunk."""
    lines = chunk.data.split(b"\n")
    return [(number, data) for number, data in enumerate(lines, chunk.first_line) if data.strip()]


def _decode_json(text: str) -> dict[str, object] | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    return raw if type(raw) is dict else None


def _csv_columns(header: bytes) -> tuple[int, dict[str, int]]:
    """The number of columns and where each field is, for a header without quotes.

    A header with quotes gives no columns: its rows take the reference path.
    """
    text = header.decode().rstrip("\r\n")
    if '"' in text:
        return -1, {}
    names = [name.strip().lower() for name in text.split(",")]
    return len(names), {name: i for i, name in enumerate(names) if name in FIELDS}


def _id_digits(year: int, sex: Sex) -> str:
    """ID digits 4-6 of someone of this sex born in `year`: century and sex, then the year."""
    century_sex = (year // 100 - 19) * 2 + (1 if sex is Sex.FEMALE else 0)
    return f"{century_sex}{year % 100:02d}"


# Encoding in worker processes


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to encode chunks as the importing process would: the
    application's settings (with in-memory persistence, for the mapper alone)."""

    env: Mapping[str, str]
    id_key: bytes
    today: date
    actor: Actor
    fmt: RegisterFormat
    header: bytes


_worker_encoder: ChunkEncoder | None = None


def start_worker(config: WorkerConfig) -> None:
    """A worker process's initializer. Workers import this module, not the importer's:
    it leaves out PostgreSQL's driver and the event store's recorders."""
    global _worker_encoder
    ids = IdDeriver(config.id_key)
    app = PopulationApp(config.env, utc_now, ids)
    _worker_encoder = ChunkEncoder(
        app.mapper,
        ids,
        FieldHasher(config.id_key),
        config.today,
        config.actor,
        utc_now,
        config.fmt,
        config.header,
    )


def encode_in_worker(chunk: Chunk) -> EncodedChunk:
    assert _worker_encoder is not None, "the worker was not initialised"
    return _worker_encoder.encode(chunk)
