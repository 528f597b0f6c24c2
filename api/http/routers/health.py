"""Liveness, readiness and metrics, outside ``/v1`` and without authentication."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from api.http.dependencies import RegistryDep
from api.http.metrics import LagSource, MetricsRegistry
from api.http.problems import ServiceUnavailable, problem_responses
from api.http.schemas.queries import Alive, Ready

logger = logging.getLogger(__name__)

router = APIRouter(tags=["service"])

RETRY_AFTER_SECONDS = 5
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def get_redis(request: Request) -> redis.Redis | None:
    client: redis.Redis | None = getattr(request.app.state, "redis", None)
    return client


@router.get("/healthz", summary="The process is up")
def healthz() -> Alive:
    return Alive()


@router.get(
    "/readyz",
    responses=problem_responses(503),
    summary="The event store (and Redis, when configured) answer",
)
def readyz(
    registry: RegistryDep, client: Annotated[redis.Redis | None, Depends(get_redis)]
) -> Ready:
    checks: dict[str, Literal["ok", "not_configured"]] = {}
    down: list[str] = []
    try:
        for app in registry.apps.values():
            app.recorder.max_notification_id()
        checks["event_store"] = "ok"
    except Exception as exc:
        logger.warning("event store not ready: %s", type(exc).__qualname__)
        down.append("event_store")
    if client is None:
        checks["redis"] = "not_configured"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            logger.warning("redis not ready: %s", type(exc).__qualname__)
            down.append("redis")
    if down:
        raise ServiceUnavailable(
            f"not ready: {', '.join(down)} unavailable",
            retry_after=RETRY_AFTER_SECONDS,
            unavailable=down,
        )
    return Ready(checks=checks)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
def metrics(request: Request) -> PlainTextResponse:
    registry: MetricsRegistry = request.app.state.metrics
    lag_source: LagSource | None = request.app.state.lag_source
    return PlainTextResponse(registry.render(lag_source), media_type=PROMETHEUS_TEXT)
