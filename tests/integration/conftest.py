"""Fixtures of the integration tests that run both on the embedded default and on servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.bootstrap import Registry
from infrastructure.settings import Settings
from projections.runtime import ProjectionRuntime
from projections.stores import RedisStore
from tests.support.registry import MovableClock, registry_settings


@pytest.fixture(
    params=[
        pytest.param("embedded"),
        pytest.param("servers", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The embedded default (SQLite, read models in memory), or PostgreSQL and Redis."""
    if request.param == "embedded":
        return registry_settings(tmp_path)
    postgres_url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_url")
    namespace = f"{request.getfixturevalue('redis_prefix')}readmodels"
    return registry_settings(
        tmp_path, postgres_url, VAXREG_REDIS_URL=redis_url, VAXREG_REDIS_NAMESPACE=namespace
    )


@pytest.fixture
def runtime(registry: Registry, backend_settings: Settings) -> Iterator[ProjectionRuntime]:
    """The read models over the module's `registry`, in the store its settings name."""
    runtime = ProjectionRuntime.from_registry(registry)
    assert isinstance(runtime.store, RedisStore) == (backend_settings.redis_url is not None)
    yield runtime
    if isinstance(runtime.store, RedisStore):
        runtime.store.client.close()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()
