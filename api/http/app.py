"""The app factory: the HTTP API of one process over a wired `Registry`.

``create_app(registry)`` mounts the routers under ``/v1`` and the service endpoints at
the root, verifies bearer tokens with a key derived from the registry's key ring, keeps
revocations and rate-limit counters in Redis when it is configured (in memory
otherwise), and renders every error as a problem document. A database or Redis that
does not answer gives a 503 with ``Retry-After``. `app_from_environment` is the factory
``vaxreg serve`` hands to uvicorn.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.http import hotpath
from api.http.access import WATCHED, Watched, install_access_log
from api.http.dose_path import DoseRecording, is_dose_recording
from api.http.metrics import LagSource, Metrics, MetricsRegistry
from api.http.problems import (
    BodySizeLimit,
    install_problem_handlers,
)
from api.http.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from api.http.routers import ROUTERS, health, imports, queries
from api.http.routers.events import EventFeed
from api.http.security import (
    MemoryRevocationList,
    RedisRevocationList,
    RevocationList,
    TokenVerifier,
)
from infrastructure.bootstrap import Registry, bootstrap
from infrastructure.settings import load_settings
from projections.runtime import ProjectionRuntime

MAX_BODY_BYTES = 1_000_000
REDIS_TIMEOUT_SECONDS = 1.0

DESCRIPTION = """\
The national vaccination and citizen-mobility registry.

Every `/v1` endpoint needs a bearer token (`vaxreg token --role ROLE --subject ID`).
Commands answer 201 with the position of their events; send an `Idempotency-Key`
header to make a retry safe. Errors are RFC 9457 problem documents with a stable `code`.
"""


class RegistryAPI(FastAPI):
    """The API app: checkpoint lookups go straight to `lookups` and doses to `doses`,
    ahead of the middleware."""

    lookups: hotpath.CheckpointLookups | None = None
    doses: DoseRecording | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.lookups is not None:
                route = hotpath.route_of(scope["path"])
                if route is not None:
                    await self.lookups.serve(route, scope, receive, send)
                    return
            if self.doses is not None and is_dose_recording(scope):
                await self.doses.serve(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    registry: Registry,
    *,
    verifier: TokenVerifier | None = None,
    read_models: Any = None,
    redis_client: redis.Redis | None = None,
    redis_prefix: str = "vaxreg:",
    rate_limiter: RateLimiter | None = None,
    lag_source: LagSource | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    close_on_shutdown: bool = False,
    watched: Mapping[str, Watched] = WATCHED,
) -> RegistryAPI:
    """The API over `registry`; with `close_on_shutdown` the app closes it when it stops.

    Without `redis_client`, one is made from ``settings.redis_url`` when that is set.
    `read_models` (the read-model queries) is kept in ``app.state.read_models``.
    """
    settings = registry.settings
    if redis_client is None and settings.redis_url:
        redis_client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if read_models is not None:
            read_models.start()
        yield
        if read_models is not None:
            read_models.close()
            await read_models.aclose()
        if close_on_shutdown:
            registry.close()
            if redis_client is not None:
                redis_client.close()

    app = RegistryAPI(
        title="vaxreg",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    revocations: RevocationList = (
        RedisRevocationList(redis_client, prefix=f"{redis_prefix}revoked:")
        if redis_client is not None
        else MemoryRevocationList()
    )
    app.state.registry = registry
    app.state.read_models = read_models
    app.state.redis = redis_client
    app.state.token_verifier = verifier or TokenVerifier(
        settings.secret_keys, revocations=revocations
    )
    app.state.rate_limiter = rate_limiter or (
        RedisRateLimiter(redis_client, prefix=f"{redis_prefix}ratelimit:")
        if redis_client is not None
        else MemoryRateLimiter()
    )
    app.state.event_feed = EventFeed(registry)
    app.state.metrics = MetricsRegistry()
    app.state.lag_source = lag_source

    for router in (*ROUTERS, health.router):
        app.include_router(router)
    app.include_router(queries.router)

    app.add_middleware(Metrics, registry=app.state.metrics)
    install_access_log(app, registry, watched=watched)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, exempt=(imports.IMPORTS_PATH,))
    install_problem_handlers(app)
    app.lookups = hotpath.install(app)
    app.doses = DoseRecording(app, max_body_bytes)
    return app


def app_from_environment() -> RegistryAPI:
    """The app of ``vaxreg serve``: settings from the environment, one registry per worker.

    The objects made while wiring the worker live as long as it does: frozen out of the
    garbage collector's generations, they are not scanned again by every collection a
    request triggers (a collection of them once cost lookups tens of milliseconds).
    """
    registry = bootstrap(load_settings())
    runtime = ProjectionRuntime.from_registry(registry)
    app = create_app(
        registry,
        read_models=runtime.read_models,
        redis_prefix=f"{registry.settings.redis_namespace}:",
        lag_source=runtime.lag_seconds,
        close_on_shutdown=True,
    )
    gc.collect()
    gc.freeze()
    return app
