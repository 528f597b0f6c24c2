from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
import redis
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api.http.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from api.http.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, rate_limit
from api.http.roles import Role
from api.http.security import (
    MemoryRevocationList,
    Principal,
    TokenIssuer,
    TokenVerifier,
    require,
)
from infrastructure.keys import KeyRing

T0 = datetime(2024, 3, 1, 8, 0, 10, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    yield client, f"{redis_prefix}ratelimit:"
    client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest, clock: Clock) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter(now=clock)
    client, prefix = request.getfixturevalue("redis_client")
    return RedisRateLimiter(client, prefix=prefix, now=clock)


def test_limit_per_window(limiter: RateLimiter, clock: Clock) -> None:
    decisions = [limiter.hit("a", 3, MINUTE) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == 50
    assert limiter.hit("b", 3, MINUTE).allowed

    clock.at = T0 + timedelta(seconds=50)
    assert limiter.hit("a", 3, MINUTE).allowed


def test_retry_after_is_at_least_a_second(limiter: RateLimiter, clock: Clock) -> None:
    clock.at = T0.replace(second=59, microsecond=999_000)
    limiter.hit("a", 1, MINUTE)
    assert limiter.hit("a", 1, MINUTE).retry_after == 1


@pytest.mark.redis
def test_redis_counters_expire(redis_client: tuple[redis.Redis, str], clock: Clock) -> None:
    client, prefix = redis_client
    RedisRateLimiter(client, prefix=prefix, now=clock).hit("a", 3, MINUTE)
    [key] = client.scan_iter(match=prefix + "*")
    ttl_ms = client.pttl(key)
    assert isinstance(ttl_ms, int)
    assert 0 < ttl_ms <= 51_000


def test_rate_limit_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        rate_limit(0, MINUTE)
    with pytest.raises(ValueError, match="positive"):
        rate_limit(1, timedelta(0))


def test_dependency_limits_each_subject_per_route(clock: Clock) -> None:
    keyring = KeyRing.from_setting("k1:a-secret-long-enough-for-tests")
    issuer = TokenIssuer(keyring, now=clock)
    app = FastAPI()
    app.state.token_verifier = TokenVerifier(keyring, revocations=MemoryRevocationList(), now=clock)
    app.state.rate_limiter = MemoryRateLimiter(now=clock)

    @app.get("/v1/me", dependencies=[Depends(require(Role.CITIZEN))])
    def me(
        principal: Annotated[Principal, Depends(rate_limit(2, MINUTE))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/v1/me/doses", dependencies=[Depends(rate_limit(2, MINUTE))])
    def doses() -> list[str]:
        return []

    install_problem_handlers(app)
    client = TestClient(app)
    alice = {"Authorization": f"Bearer {issuer.mint(Role.CITIZEN, '001204000123')}"}
    bob = {"Authorization": f"Bearer {issuer.mint(Role.CITIZEN, '001204000124')}"}

    assert [client.get("/v1/me", headers=alice).status_code for _ in range(2)] == [200, 200]
    response = client.get("/v1/me", headers=alice)
    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["Retry-After"] == "50"
    assert response.json()["code"] == "rate_limited"
    assert response.json()["retry_after"] == 50

    assert client.get("/v1/me", headers=bob).status_code == 200
    assert client.get("/v1/me/doses", headers=alice).status_code == 200
    assert client.get("/v1/me").status_code == 401
    clock.at = T0 + MINUTE
    assert client.get("/v1/me", headers=alice).status_code == 200
