"""The shared test-server fixtures do what the other integration tests rely on."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from reliability.servers import (
    ThrowawayPostgres,
    ThrowawayRedis,
    create_database,
    database_exists,
    delete_prefixed_keys,
    drop_database,
    postgres_server_url,
    unique_name,
)


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.mark.postgres
def test_postgres_url_is_a_fresh_usable_database(postgres_url: str) -> None:
    name = _database_name(postgres_url)
    assert name.startswith("vaxreg_test_")
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY)")
        conn.execute("INSERT INTO probe VALUES (1)")
        assert conn.execute("SELECT id FROM probe").fetchall() == [(1,)]


@pytest.mark.postgres
def test_dropped_database_is_gone_even_with_open_sessions() -> None:
    server = postgres_server_url()
    name = unique_name("vaxreg_test_")
    url = create_database(server, name)
    try:
        assert database_exists(server, name)
        lingering = psycopg.connect(url)
        try:
            drop_database(server, name)
        finally:
            lingering.close()
        assert not database_exists(server, name)
    finally:
        drop_database(server, name)


@pytest.mark.redis
def test_prefix_cleanup_deletes_only_that_prefix(redis_url: str, redis_prefix: str) -> None:
    other_prefix = f"{unique_name('vaxregtest:')}:"
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{redis_prefix}a", "1")
        client.hset(f"{redis_prefix}nested:h", mapping={"k": "v"})
        client.set(f"{other_prefix}keep", "1")
        assert delete_prefixed_keys(redis_url, redis_prefix) == 2
        assert client.exists(f"{redis_prefix}a", f"{redis_prefix}nested:h") == 0
        assert client.get(f"{other_prefix}keep") == b"1"
    finally:
        delete_prefixed_keys(redis_url, other_prefix)
        client.close()


@pytest.mark.redis
def test_prefix_with_glob_characters_is_matched_literally(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{redis_prefix}x", "1")
        client.set(f"{redis_prefix}[*]:y", "1")
        assert delete_prefixed_keys(redis_url, f"{redis_prefix}[*]") == 1
        assert client.get(f"{redis_prefix}x") == b"1"
    finally:
        client.close()


def test_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        delete_prefixed_keys("redis://127.0.0.1:1/0", "")


@pytest.mark.redis
def test_throwaway_redis_loses_data_on_restart(throwaway_redis: ThrowawayRedis) -> None:
    client = redis.Redis.from_url(throwaway_redis.url)
    try:
        client.set("k", "v")
        throwaway_redis.restart()
        assert client.ping()
        assert client.get("k") is None
        throwaway_redis.kill()
        assert not throwaway_redis.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
        throwaway_redis.start()
        assert client.ping()
    finally:
        client.close()


@pytest.mark.redis
@pytest.mark.parametrize("throwaway_redis", [{"aof": True}], indirect=True)
def test_throwaway_redis_with_aof_keeps_data_across_kill(
    throwaway_redis: ThrowawayRedis,
) -> None:
    port = throwaway_redis.port
    client = redis.Redis.from_url(throwaway_redis.url)
    try:
        client.set("k", "v")
        throwaway_redis.kill()
        throwaway_redis.start()
        assert throwaway_redis.port == port
        assert client.get("k") == b"v"
    finally:
        client.close()


@pytest.mark.postgres
def test_throwaway_postgres_keeps_data_across_restart_and_kill(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    url = throwaway_postgres.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (1, 'before restart')")

    throwaway_postgres.restart()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT id, note FROM probe").fetchall() == [(1, "before restart")]
        conn.execute("INSERT INTO probe VALUES (2, 'before kill')")

    throwaway_postgres.kill()
    assert not throwaway_postgres.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()

    throwaway_postgres.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM probe ORDER BY id").fetchall() == [(1,), (2,)]


@pytest.mark.postgres
def test_throwaway_postgres_is_restarted_for_the_next_test(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    throwaway_postgres.kill()
    assert not throwaway_postgres.running


@pytest.mark.postgres
def test_throwaway_postgres_databases_are_separate(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    assert throwaway_postgres.running
    first = throwaway_postgres.create_database()
    second = throwaway_postgres.create_database()
    assert first != second
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_in_first (id int)")
    with psycopg.connect(second) as conn:
        row = conn.execute("SELECT to_regclass('only_in_first')").fetchone()
        assert row == (None,)
