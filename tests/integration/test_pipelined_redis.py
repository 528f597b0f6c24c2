"""The pipelined Redis reader against real servers: replies, concurrency, loss, timeouts."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from projections.pipelined import PipelinedRedis
from reliability.servers import ThrowawayRedis


@pytest.fixture
def seeded(redis_url: str, redis_prefix: str) -> str:
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}plain", b"value")
    client.hset(f"{redis_prefix}hash", mapping={b"a": b"1", b"b": b"2"})
    client.set(f"{redis_prefix}large", b"x" * 3_000_000)
    client.close()
    return redis_prefix


def test_replies_of_each_kind(redis_url: str, seeded: str) -> None:
    async def read() -> list[object]:
        client = PipelinedRedis.from_url(redis_url)
        try:
            return [
                await client.execute_command("GET", f"{seeded}plain"),
                await client.execute_command("GET", f"{seeded}missing"),
                await client.execute_command("EXISTS", f"{seeded}plain", f"{seeded}hash"),
                await client.execute_command("HMGET", f"{seeded}hash", "a", "zz", "b"),
                len(await client.execute_command("GET", f"{seeded}large")),
            ]
        finally:
            await client.aclose()

    assert asyncio.run(read()) == [b"value", None, 2, [b"1", None, b"2"], 3_000_000]


def test_an_error_reply_fails_its_command_only(redis_url: str, seeded: str) -> None:
    async def read() -> list[object]:
        client = PipelinedRedis.from_url(redis_url)
        try:
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await client.execute_command("HGET", f"{seeded}plain", "a")
            return await client.execute_many(
                [("GET", f"{seeded}plain"), ("HGET", f"{seeded}hash", "b")]
            )
        finally:
            await client.aclose()

    assert asyncio.run(read()) == [b"value", b"2"]


def test_concurrent_commands_share_one_connection_and_get_their_own_replies(
    redis_url: str, redis_prefix: str
) -> None:
    client_sync = redis.Redis.from_url(redis_url)
    client_sync.mset({f"{redis_prefix}k{i}": str(i) for i in range(500)})
    client_sync.close()

    async def read() -> tuple[list[object], int]:
        client = PipelinedRedis.from_url(redis_url)
        try:
            values = await asyncio.gather(
                *(client.execute_command("GET", f"{redis_prefix}k{i}") for i in range(500))
            )
            return list(values), len(client._connections)
        finally:
            await client.aclose()

    values, connections = asyncio.run(read())
    assert values == [str(i).encode() for i in range(500)]
    assert connections == 1


def test_a_lost_server_fails_commands_and_the_next_connects_again(
    throwaway_redis: ThrowawayRedis,
) -> None:
    async def scenario() -> object:
        client = PipelinedRedis.from_url(throwaway_redis.url, timeout=2.0)
        try:
            assert await client.execute_command("PING") == b"PONG"
            throwaway_redis.kill()
            with pytest.raises(RedisConnectionError):
                await client.execute_command("PING")
            with pytest.raises(RedisConnectionError, match="cannot connect"):
                await client.execute_command("PING")
            throwaway_redis.start()
            return await client.execute_command("PING")
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == b"PONG"


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_server_that_does_not_answer_times_out(silent_server: tuple[str, int]) -> None:
    host, port = silent_server

    async def scenario() -> list[float]:
        client = PipelinedRedis(host, port, timeout=0.3)
        took = []
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError, match=r"did not answer within 0\.3 s"):
                    await asyncio.gather(*(client.execute_command("PING") for _ in range(3)))
                took.append(time.monotonic() - started)
        finally:
            await client.aclose()
        return took

    assert all(0.25 <= seconds < 1.5 for seconds in asyncio.run(scenario()))


def test_password_and_database_are_set_on_connect(redis_url: str, redis_prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    other_db = redis.Redis.from_url(f"{base}/1")
    key = f"{redis_prefix}in-db-1"
    other_db.set(key, b"one")
    try:

        async def read(url: str) -> object:
            client = PipelinedRedis.from_url(url)
            try:
                return await client.execute_command("GET", key)
            finally:
                await client.aclose()

        assert asyncio.run(read(f"{base}/1")) == b"one"
        assert asyncio.run(read(f"{base}/0")) is None
        with pytest.raises(ResponseError, match="AUTH"):
            asyncio.run(read(base.replace("redis://", "redis://:wrong-password@") + "/1"))
    finally:
        other_db.delete(key)
        other_db.close()


def test_a_caller_cancelled_while_connecting_leaves_the_others_an_answer(
    silent_server: tuple[str, int],
) -> None:
    host, port = silent_server

    async def scenario() -> None:
        client = PipelinedRedis(host, port, password="secret", timeout=0.3)
        first = asyncio.ensure_future(client.execute_command("PING"))
        second = asyncio.ensure_future(client.execute_command("PING"))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(second, timeout=2.0)
        assert first.cancelled()

    asyncio.run(scenario())
