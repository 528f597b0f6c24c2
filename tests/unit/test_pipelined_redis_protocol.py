"""The pipelined Redis reader's protocol, without a server: encoding, parsing, chunking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from projections.pipelined import (
    PipelinedRedis,
    _Connection,
    _Incomplete,
    encode_command,
    parse_reply,
)

replies = st.recursive(
    st.none() | st.binary(max_size=64) | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    lambda children: st.lists(children, max_size=5),
    max_leaves=12,
)


def encode_reply(reply: Any) -> bytes:
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    return b"*%d\r\n" % len(reply) + b"".join(encode_reply(item) for item in reply)


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command(("HGET", b"c:ab", 7)) == b"*3\r\n$4\r\nHGET\r\n$4\r\nc:ab\r\n$1\r\n7\r\n"


def test_simple_strings_and_errors_parse() -> None:
    assert parse_reply(b"+OK\r\n", 0) == (b"OK", 5)
    error, end = parse_reply(b"-WRONGTYPE not a hash\r\n", 0)
    assert isinstance(error, ResponseError)
    assert str(error) == "WRONGTYPE not a hash"
    assert end == 23


def test_a_reply_cut_short_is_incomplete() -> None:
    for cut in (b"$5\r\nab", b"$5", b"*2\r\n$1\r\na\r\n", b":1"):
        with pytest.raises(_Incomplete):
            parse_reply(cut, 0)


def test_an_unknown_reply_type_breaks_the_connection() -> None:
    with pytest.raises(RedisConnectionError, match="unexpected reply"):
        parse_reply(b"%1\r\n", 0)


@given(st.lists(replies, min_size=1, max_size=8), st.data())
def test_replies_in_any_chunks_reach_their_commands_in_order(
    sent: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(encode_reply(reply) for reply in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    loop = asyncio.new_event_loop()
    try:
        connection = _Connection(timeout=1.0)
        futures = [loop.create_future() for _ in sent]
        connection.waiting.extend((future, 0.0) for future in futures)
        for chunk in chunks:
            if chunk:
                connection.data_received(chunk)
        assert [future.result() for future in futures] == sent
        assert not connection.buffer
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6390/3", ("127.0.0.1", 6390, 3, None, None, False, None)),
        ("redis://:s%40cret@cache", ("cache", 6379, 0, None, "s@cret", False, None)),
        ("rediss://reader:pw@cache:6380", ("cache", 6380, 0, "reader", "pw", True, None)),
        (
            "unix:///run/redis.sock?db=2",
            ("127.0.0.1", 6379, 2, None, None, False, "/run/redis.sock"),
        ),
    ],
)
def test_urls_name_the_server(url: str, expected: tuple[object, ...]) -> None:
    client = PipelinedRedis.from_url(url)
    assert (
        client.host,
        client.port,
        client.db,
        client.username,
        client.password,
        client.tls,
        client.unix_socket,
    ) == expected


def test_a_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        PipelinedRedis.from_url("http://cache:6379")
