"""Encoding extract rows for the bulk import: the stored events, ids, hashes and
rejections are those the reference path (rows, the `Citizen` aggregate and the
application's mapper) gives, byte for byte, and decode through the application to the
same events."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from application.ids import IdDeriver
from application.population import PopulationApp
from domain.base import Actor, recording_clock
from domain.citizen import Citizen
from domain.errors import DomainError
from infrastructure.population.encoding import (
    HASH_BYTES,
    ID_BYTES,
    PROBE_BYTES,
    ChunkEncoder,
    EncodedChunk,
    event_fields,
    registration_reason,
)
from infrastructure.population.generator import generate_register
from infrastructure.population.importer import ExtractReader
from infrastructure.population.index import CitizenValues, FieldHasher, unpack_hashes
from infrastructure.population.rows import (
    Reason,
    RegisterEntry,
    RegisterFormat,
    RowRejected,
    read_rows,
    write_csv,
    write_ndjson,
)

KEY = b"encoding-test-id-key-0123456789"
TODAY = date(2021, 8, 2)
AT = datetime(2021, 8, 2, 3, 4, 5, 678901, tzinfo=UTC)
ACTOR = Actor("population-register-import", "system")


def population_app(**env: str) -> PopulationApp:
    return PopulationApp(
        {"PERSISTENCE_MODULE": "eventsourcing.popo", **env}, lambda: AT, IdDeriver(KEY)
    )


def encode(app: PopulationApp, data: bytes, fmt: RegisterFormat) -> EncodedChunk:
    reader = ExtractReader(io.BytesIO(data), fmt, chunk_lines=1_000_000)
    [chunk] = list(reader.chunks())
    encoder = ChunkEncoder(
        app.mapper, app.ids, FieldHasher(KEY), TODAY, ACTOR, app.clock, fmt, reader.header
    )
    return encoder.encode(chunk)


def reference(
    app: PopulationApp, data: bytes, fmt: RegisterFormat
) -> tuple[dict[int, tuple[Citizen, list[StoredEvent]]], dict[int, str]]:
    """Per line, the citizen and its stored events made the normal way, or the reason."""
    made: dict[int, tuple[Citizen, list[StoredEvent]]] = {}
    refused: dict[int, str] = {}
    for line, row in read_rows(io.BytesIO(data), fmt, today=TODAY):
        if isinstance(row, RowRejected):
            refused[line] = row.reason_code.value
            continue
        try:
            citizen = register(app, row)
        except DomainError as error:
            refused[line] = registration_reason(error).value
            continue
        if row.deceased_on is not None:
            try:
                with recording_clock(app.clock):
                    citizen.record_death(row.deceased_on, ACTOR, TODAY)
            except DomainError:
                refused[line] = Reason.BAD_DATE.value
                continue
        made[line] = (citizen, [app.mapper.to_stored_event(e) for e in citizen.collect_events()])
    return made, refused


def register(app: PopulationApp, entry: RegisterEntry) -> Citizen:
    with recording_clock(app.clock):
        return Citizen.register(
            app.ids.citizen(entry.id_number),
            entry.id_number,
            entry.full_name,
            entry.date_of_birth,
            entry.sex,
            entry.residence,
            entry.phone,
            today=TODAY,
            actor=ACTOR,
        )


def encoded_rows(
    encoded: EncodedChunk,
) -> dict[int, tuple[bytes, bytes, int, list[tuple[bytes, int, str, bytes]]]]:
    """Per line: citizen id, hashes, death flag and events."""
    rows = {}
    start = 0
    for i, (line, end) in enumerate(zip(encoded.lines, encoded.event_ends, strict=True)):
        rows[line] = (
            encoded.ids[i * ID_BYTES : (i + 1) * ID_BYTES],
            encoded.hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES],
            encoded.deaths[i],
            list(event_fields(encoded.events[start:end])),
        )
        start = end
    return rows


PROBE_ROW = struct.Struct(">hiqi16s" + "i8s" * 6 + "i?")
"""The PostgreSQL batch table's tuple: line, citizen id, six hashes, states a death."""


def assert_probes_hold_the_rows(encoded: EncodedChunk) -> None:
    assert PROBE_ROW.size == PROBE_BYTES
    assert len(encoded.probes) == PROBE_BYTES * len(encoded.lines)
    for i, fields in enumerate(PROBE_ROW.iter_unpack(encoded.probes)):
        count, line_length, line, id_length, citizen_id, *hashes, death_length, death = fields
        assert (count, line_length, id_length, death_length) == (9, 8, ID_BYTES, 1)
        assert hashes[0::2] == [8] * 6
        assert line == encoded.lines[i]
        assert citizen_id == encoded.ids[i * ID_BYTES : (i + 1) * ID_BYTES]
        assert b"".join(hashes[1::2]) == encoded.hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES]
        assert death == (encoded.deaths[i] == 1)


def assert_same_as_reference(data: bytes, fmt: RegisterFormat, **env: str) -> None:
    app = population_app(**env)
    encoded = encode(app, data, fmt)
    made, refused = reference(app, data, fmt)
    assert_probes_hold_the_rows(encoded)

    assert {r.line: r.reason for r in encoded.rejected} == refused
    rows = encoded_rows(encoded)
    assert list(rows) == sorted(made)
    hasher = FieldHasher(KEY)
    for line, (citizen_id, hashes, death, events) in rows.items():
        citizen, stored = made[line]
        assert UUID(bytes=citizen_id) == citizen.id
        values = CitizenValues.of(citizen)
        assert unpack_hashes(hashes) == hasher.hashes(citizen.id, values)
        assert death == (citizen.died_on is not None)
        assert [(UUID(bytes=i), v, t) for i, v, t, _ in events] == [
            (s.originator_id, s.originator_version, s.topic) for s in stored
        ]
        decoded = [
            app.mapper.to_domain_event(StoredEvent(UUID(bytes=i), v, t, s)) for i, v, t, s in events
        ]
        assert [vars(e) for e in decoded] == [vars(app.mapper.to_domain_event(s)) for s in stored]
        if not env:
            assert [s for *_, s in events] == [s.state for s in stored]


def extract(rows: list[dict[str, Any]], fmt: RegisterFormat) -> bytes:
    out = io.StringIO()
    (write_csv if fmt == "csv" else write_ndjson)(rows, out)
    return out.getvalue().encode()


def test_generated_extracts_encode_as_the_reference_path_does() -> None:
    for fmt in ("ndjson", "csv"):
        rows = list(generate_register(400, seed=5, error_rate=0.1))
        assert_same_as_reference(extract(rows, fmt), fmt)


def test_encrypted_and_compressed_events_decode_to_the_same_events() -> None:
    rows = list(generate_register(50, seed=6))
    env = {
        "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
        "CIPHER_KEY": AESCipher.create_key(16),
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    }
    assert_same_as_reference(extract(rows, "ndjson"), "ndjson", **env)


PERTURBATIONS: dict[str, list[Any]] = {
    "full_name": [
        "  Nguyễn   Văn  An ",
        "Nguye\u0302\u0303n Văn An",
        "O'Brien Lê",
        "Lê-Thị Hoa",
        "",
        "An2",
        "A" * 101,
        "A" * 201,
        "Tab\tName",
        7,
        None,
    ],
    "phone": ["+84912345678", "0912 345 678", "", None, "0112345678", 912345678, "09123"],
    "sex": ["Male", " female", "other", "", None],
    "residence": [" 079.760.26734", "079.760", "999.760.26734", "079.760.2673", "", None],
    "date_of_birth": ["1899-12-31", "2030-01-01", "2021-02-30", "20210101", "", None],
    "deceased_on": ["", None, "1800-01-01", "2021-07-01", "2021-08-03", "2021/07/01"],
    "id_number": ["079 098 012 345", 79098012345, "", "1234", "999198012345"],
}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    changes=st.lists(
        st.tuples(
            st.integers(0, 19),
            st.sampled_from(sorted(PERTURBATIONS)),
            st.integers(0, 99),
        ),
        max_size=12,
    ),
    fmt=st.sampled_from(["ndjson", "csv"]),
)
def test_rows_off_the_plain_form_encode_as_the_reference_path_does(
    seed: int, changes: list[tuple[int, str, int]], fmt: RegisterFormat
) -> None:
    rows: list[dict[str, Any]] = list(generate_register(20, seed=seed))
    for index, name, choice in changes:
        options = PERTURBATIONS[name]
        value = options[choice % len(options)]
        if fmt == "csv":
            value = "" if value is None else str(value)
        rows[index][name] = value
    if fmt == "csv":
        data = extract(rows, "csv")
    else:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    assert_same_as_reference(data, fmt)


def test_bad_lines_are_rejected_with_the_reference_reasons() -> None:
    good = extract(list(generate_register(2, seed=8)), "ndjson").splitlines()
    data = b"\n".join([good[0], b"{not json", b"\xff\xfe", b"  ", b"[1]", good[1], b"{}"])

    app = population_app()
    encoded = encode(app, data, "ndjson")

    assert [(r.line, r.reason) for r in encoded.rejected] == [
        (2, Reason.BAD_JSON.value),
        (3, Reason.BAD_ENCODING.value),
        (5, Reason.BAD_JSON.value),
        (7, Reason.BAD_ID_NUMBER.value),
    ]
    assert list(encoded.lines) == [1, 6]


def test_an_actor_the_template_cannot_hold_still_encodes() -> None:
    rows = list(generate_register(5, seed=9))
    app = population_app()
    data = extract(rows, "ndjson")
    reader = ExtractReader(io.BytesIO(data), "ndjson", chunk_lines=100)
    [chunk] = list(reader.chunks())
    odd_actor = Actor("female", "system")
    encoder = ChunkEncoder(
        app.mapper, app.ids, FieldHasher(KEY), TODAY, odd_actor, app.clock, "ndjson", b""
    )

    encoded = encoder.encode(chunk)

    assert list(encoded.lines) == [1, 2, 3, 4, 5]
    events = [
        app.mapper.to_domain_event(StoredEvent(UUID(bytes=i), v, t, s))
        for i, v, t, s in event_fields(encoded.events)
    ]
    assert {e.actor for e in events} == {odd_actor}  # type: ignore[attr-defined]
