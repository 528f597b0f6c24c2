"""Per-subject rate limits for citizen-facing endpoints (fixed windows).

Wiring, in the app factory: ``app.state.rate_limiter = RedisRateLimiter(redis_client)``
(or override `get_rate_limiter`). On a route::

    @router.get("/me", dependencies=[Depends(rate_limit(30, timedelta(minutes=1)))])

Each route counts separately unless routes share a `name`. A fixed window lets a
client make up to twice the limit across a window boundary, which is acceptable here.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Protocol

import redis
from fastapi import Depends, Request

from api.http.problems import RateLimited
from api.http.security import Clock, Principal, get_principal, utc_now


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: int
    """Whole seconds until the current window ends."""


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, per: timedelta) -> RateDecision:
        """Count one request for `key` and say whether it is within `limit` per `per`."""


@dataclass(frozen=True)
class _Window:
    index: int
    reset_ms: int

    @classmethod
    def at(cls, now_ms: int, per: timedelta) -> _Window:
        length = max(1, per // timedelta(milliseconds=1))
        index = now_ms // length
        return cls(index, (index + 1) * length)

    def decide(self, count: int, limit: int, now_ms: int) -> RateDecision:
        return RateDecision(
            allowed=count <= limit,
            remaining=max(0, limit - count),
            retry_after=max(1, math.ceil((self.reset_ms - now_ms) / 1000)),
        )


class MemoryRateLimiter:
    """For tests and single-process runs."""

    MAX_KEYS = 100_000

    def __init__(self, *, now: Clock = utc_now) -> None:
        self._now = now
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, per: timedelta) -> RateDecision:
        now_ms = int(self._now().timestamp() * 1000)
        window = _Window.at(now_ms, per)
        with self._lock:
            index, count = self._counts.get(key, (window.index, 0))
            count = count + 1 if index == window.index else 1
            self._counts[key] = (window.index, count)
            if len(self._counts) > self.MAX_KEYS:
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window.index}
        return window.decide(count, limit, now_ms)


class RedisRateLimiter:
    """One counter per key and window, incremented and given its expiry in one transaction."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "vaxreg:ratelimit:", now: Clock = utc_now
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._now = now

    def hit(self, key: str, limit: int, per: timedelta) -> RateDecision:
        now_ms = int(self._now().timestamp() * 1000)
        window = _Window.at(now_ms, per)
        name = f"{self._prefix}{key}:{window.index}"
        with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, max(1, window.reset_ms - now_ms) + 1000, nx=True)
            count, _ = pipe.execute()
        return window.decide(int(count), limit, now_ms)


def get_rate_limiter(request: Request) -> RateLimiter:
    """The limiter the app factory put in ``app.state.rate_limiter``."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        raise RuntimeError("app.state.rate_limiter is not set")
    return limiter


def _bucket(request: Request) -> str:
    path = getattr(request.scope.get("route"), "path_format", None)
    return f"{request.method}:{path}" if isinstance(path, str) else "app"


def rate_limit(
    limit: int, per: timedelta, *, name: str | None = None
) -> Callable[[Request, Principal, RateLimiter], Principal]:
    """A dependency allowing each subject `limit` requests per `per`, else a 429.

    It yields the principal, so it can stand in for `get_principal` on the route.
    """
    if limit < 1 or per <= timedelta(0):
        raise ValueError("a rate limit needs a positive limit and period")

    def dependency(
        request: Request,
        principal: Annotated[Principal, Depends(get_principal)],
        limiter: Annotated[RateLimiter, Depends(get_rate_limiter)],
    ) -> Principal:
        subject = hashlib.sha256(principal.subject.encode()).hexdigest()[:32]
        key = f"{name or _bucket(request)}:{principal.role.value}:{subject}"
        decision = limiter.hit(key, limit, per)
        if not decision.allowed:
            raise RateLimited(
                f"at most {limit} requests per {per.total_seconds():g} seconds",
                retry_after=decision.retry_after,
            )
        return principal

    return dependency
