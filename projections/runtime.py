"""Wiring the read models: store, projections, worker and reader from a `Registry`.

Entry points (also for the benchmark scenarios)::

    runtime = ProjectionRuntime.from_registry(registry)   # Redis if settings.redis_url
    runtime.catch_up()                  # apply what is there, in this thread
    runtime.start() / runtime.stop()    # the supervised worker threads
    runtime.rebuild("citizens", progress)
    runtime.read_models                 # the `ReadModels` the API reads (async)
    runtime.sync_read_models            # the same queries, synchronous
    runtime.lag() / runtime.lag_seconds()

With ``settings.redis_url`` set the store is a `RedisStore` (keys under
``VAXREG_REDIS_NAMESPACE``) and ``vaxreg projector`` runs the worker in its own
process; without it the store is an in-process `MemoryStore` and `ReadModels.start()`
(called by the app's lifespan) runs the worker in a thread of the API process: the
embedded default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import redis

from infrastructure.bootstrap import Registry
from projections.engine import Lag, Projection, RebuildProgress
from projections.models.projection import CitizenProjection, Owners
from projections.pipelined import PipelinedRedis
from projections.reader import ReadModels, SyncReadModels
from projections.stores import MemoryStore, ReadModelStore, RedisStore
from projections.worker import ProjectionWorker


def owner_lookup(registry: Registry) -> Callable[[str, UUID], str]:
    """Reads a record's first event for the person it names (see `Owners`)."""

    def lookup(context: str, record_id: UUID) -> str:
        first: Any = registry.apps[context].repository.get(record_id, version=1)
        return registry.ids.pseudonym(first.person)

    return lookup


def build_projections(registry: Registry) -> list[Projection]:
    """Every read-model projection, by name: ``citizens``."""
    owners = Owners(owner_lookup(registry))
    settings = registry.settings
    return [
        CitizenProjection(
            registry.ids,
            owners,
            settings.checkpoint_policy,
            rebuild_citizens=settings.rebuild_citizens,
        )
    ]


class ProjectionRuntime:
    """The store, the projections over the registry's applications, their worker, readers."""

    def __init__(
        self,
        registry: Registry,
        store: ReadModelStore,
        *,
        async_client: PipelinedRedis | None = None,
        embedded: bool = False,
        **worker_options: Any,
    ) -> None:
        self.registry = registry
        self.store = store
        self.projections = build_projections(registry)
        self.worker = ProjectionWorker(registry.apps, self.projections, store, **worker_options)
        self.embedded = embedded
        self.sync_read_models = SyncReadModels(store, self.projections, self.worker)
        if async_client is None and isinstance(store, RedisStore):
            kwargs = store.client.connection_pool.connection_kwargs
            wanted = ("host", "port", "db", "username", "password")
            async_client = PipelinedRedis(**{k: kwargs[k] for k in wanted if k in kwargs})
        self.read_models = ReadModels(
            store,
            self.projections,
            self.worker,
            async_client=async_client,
            run_worker=embedded,
        )

    @classmethod
    def from_registry(
        cls, registry: Registry, namespace: str | None = None, **options: Any
    ) -> ProjectionRuntime:
        """Redis when the settings name it, else the embedded in-process store; keys
        under `namespace`, by default the settings' ``VAXREG_REDIS_NAMESPACE``."""
        url = registry.settings.redis_url
        namespace = namespace or registry.settings.redis_namespace
        if url is None:
            return cls(registry, MemoryStore(namespace), embedded=True, **options)
        store = RedisStore(redis.Redis.from_url(url), namespace)
        return cls(registry, store, async_client=PipelinedRedis.from_url(url), **options)

    def catch_up(self) -> int:
        return self.worker.catch_up()

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def run_forever(self) -> None:
        self.worker.run_forever()

    def named(self, name: str | None) -> list[str]:
        """The projections `name` selects (None: all); KeyError names the known ones."""
        names = [p.name for p in self.projections if name is None or p.name == name]
        if not names:
            known = ", ".join(p.name for p in self.projections)
            raise KeyError(f"no projection {name!r} (known: {known})")
        return names

    def rebuild(
        self, name: str | None = None, progress: Callable[[RebuildProgress], None] | None = None
    ) -> list[str]:
        """Rebuild one projection (or all) into a new generation and switch readers to it."""
        names = self.named(name)
        for each in names:
            self.worker.rebuild(each, progress)
        return names

    def lag(self) -> dict[str, dict[str, Lag]]:
        return self.worker.lag()

    def lag_seconds(self) -> dict[str, dict[str, float]]:
        """The API's `/metrics` lag source: seconds behind per projection and context."""
        return {
            name: {ctx: lag.seconds for ctx, lag in per.items()} for name, per in self.lag().items()
        }
