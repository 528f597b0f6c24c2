"""Reading an extract for import: chunks and line numbers, the streamed request body, and
the progress line."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

from api.http.routers.imports import StreamedBody
from infrastructure.population.encoding import Chunk, Rejected
from infrastructure.population.importer import ExtractReader
from infrastructure.population.progress import ProgressBar
from infrastructure.population.rows import MAX_LINE_LENGTH


def chunks(data: bytes, chunk_lines: int = 2) -> tuple[ExtractReader, list[Chunk]]:
    reader = ExtractReader(io.BytesIO(data), None, chunk_lines)
    return reader, list(reader.chunks())


def test_ndjson_chunks_keep_every_line_and_its_number() -> None:
    data = b'\xef\xbb\xbf\n{"a":1}\n{"a":2}\n\n{"a":3}'

    reader, found = chunks(data)

    assert reader.fmt == "ndjson"
    assert reader.header == b""
    assert found == [
        Chunk(1, b'\n{"a":1}\n', ()),
        Chunk(3, b'{"a":2}\n\n', ()),
        Chunk(5, b'{"a":3}\n', ()),
    ]
    assert reader.bytes_read == len(data)


def test_a_csv_header_is_kept_apart_from_the_chunks() -> None:
    header = b"id_number,full_name,date_of_birth,sex,residence\n"

    reader, found = chunks(b"\n" + header + b"a\nb\nc\n")

    assert (reader.fmt, reader.header) == ("csv", header)
    assert found == [Chunk(3, b"a\nb\n", ()), Chunk(5, b"c\n", ())]


def test_a_csv_header_lacking_a_column_ends_the_file() -> None:
    _, found = chunks(b"id_number,full_name\nrow\nrow\n")

    assert len(found) == 1
    [rejected] = found[0].rejected
    assert (rejected.line, rejected.reason) == (1, "bad_csv")
    assert found[0].data == b""


def test_an_overlong_line_is_rejected_and_counted_as_a_blank_line() -> None:
    data = b'{"a":1}\n' + b"x" * (MAX_LINE_LENGTH * 3) + b'\n{"a":2}\n'

    reader, found = chunks(data, chunk_lines=10)

    message = f"the line is over {MAX_LINE_LENGTH} bytes"
    assert found == [Chunk(1, b'{"a":1}\n\n{"a":2}\n', (Rejected(2, "line_too_long", message),))]
    assert reader.bytes_read == len(data)


async def _body(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.anyio
async def test_the_streamed_body_reads_lines_across_chunks_within_the_limit() -> None:
    body = StreamedBody(_body([b"ab", b"c\nde", b"fghij\n", b"", b"k"]))

    def read() -> list[bytes]:
        return [body.readline(4) for _ in range(6)]

    lines = await anyio.to_thread.run_sync(read)

    assert lines == [b"abc\n", b"defg", b"hij\n", b"k", b"", b""]


def test_the_progress_line_shows_rate_share_and_eta() -> None:
    bar = ProgressBar(io.StringIO(), total_bytes=1000)

    line = bar.line(rows=5000, bytes_read=250, elapsed=2.0)

    assert "25.0%" in line
    assert "2,500 rows/s" in line
    assert "ETA 00:06" in line
    assert "ETA" not in ProgressBar(io.StringIO(), None).line(10, 10, 1.0)
