"""Shared fixtures: databases and key prefixes on the test servers, throwaway servers.

An unreachable server makes the test fail, never skip, so a green run proves the
PostgreSQL and Redis tests really executed. Tests using these fixtures get the
``postgres`` / ``redis`` markers automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from reliability.servers import (
    ServerUnavailableError,
    ThrowawayPostgres,
    ThrowawayRedis,
    check_redis,
    create_database,
    delete_prefixed_keys,
    drop_database,
    postgres_server_url,
    redis_server_url,
    unique_name,
)

_POSTGRES_FIXTURES = {"postgres_url", "throwaway_postgres", "throwaway_postgres_cluster"}
_REDIS_FIXTURES = {"redis_url", "redis_prefix", "throwaway_redis"}

T = TypeVar("T")


def _or_fail(action: Callable[[], T], hint: str = "") -> T:
    """Run ``action``; an unavailable server fails the test with a readable message."""
    try:
        return action()
    except ServerUnavailableError as exc:
        message = f"{exc}{hint}"
    pytest.fail(message, pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & _POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if fixtures & _REDIS_FIXTURES:
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty database on ``VAXREG_TEST_POSTGRES_URL``; dropped afterwards."""
    server = postgres_server_url()
    name = unique_name("vaxreg_test_")
    url = _or_fail(
        lambda: create_database(server, name),
        "\n(set VAXREG_TEST_POSTGRES_URL to a reachable server)",
    )
    try:
        yield url
    finally:
        drop_database(server, name)


@pytest.fixture
def redis_url() -> str:
    """URL of the shared test Redis (``VAXREG_TEST_REDIS_URL``), checked to answer."""
    url = redis_server_url()
    _or_fail(lambda: check_redis(url), "\n(set VAXREG_TEST_REDIS_URL to a reachable server)")
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"{unique_name('vaxregtest:')}:"
    try:
        yield prefix
    finally:
        delete_prefixed_keys(redis_url, prefix)


@pytest.fixture
def throwaway_redis(request: pytest.FixtureRequest) -> Iterator[ThrowawayRedis]:
    """A private redis-server, no persistence by default.

    For an append-only file, parametrize indirectly:
    ``@pytest.mark.parametrize("throwaway_redis", [{"aof": True}], indirect=True)``.
    """
    options: dict[str, Any] = getattr(request, "param", {})
    server = _or_fail(lambda: ThrowawayRedis(**options))
    try:
        _or_fail(server.start)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def throwaway_postgres_cluster() -> Iterator[ThrowawayPostgres]:
    """One private PostgreSQL cluster per session (initdb is slow); removed at the end."""
    cluster = _or_fail(ThrowawayPostgres)
    try:
        _or_fail(cluster.start)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def throwaway_postgres(
    throwaway_postgres_cluster: ThrowawayPostgres,
) -> ThrowawayPostgres:
    """The session's private cluster, started again if an earlier test left it down."""
    _or_fail(throwaway_postgres_cluster.start)
    return throwaway_postgres_cluster
