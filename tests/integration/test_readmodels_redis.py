"""The real read models on PostgreSQL and Redis: a killed projector, a flushed Redis.

Snapshots are compared with counters at 0 left out: live threads apply the contexts in
their own order, and a count may pass through a key a rebuild never touches.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import redis

from application.commands import Request
from application.immunization import IdentityAtSite
from application.mobility import HealthStatement
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.identity import NationalId, Sex
from domain.mobility import Transport, Trip
from domain.risk import RiskLevel
from infrastructure.bootstrap import Registry
from projections import engine
from projections.engine import (
    DERIVING,
    RebuildProgress,
    ShareReader,
    positions,
    rebuild,
)
from projections.models.projection import NAME
from projections.runtime import ProjectionRuntime
from projections.stores import RedisStore
from reliability.servers import ThrowawayRedis
from tests.support.registry import (
    ADMIN,
    NURSE,
    OFFICER,
    TEST_ID_KEY,
    TEST_SECRET,
    MovableClock,
    build_registry,
    dose,
    registry_settings,
)
from tests.support.snapshots import normalised
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PROVINCES = ("079", "001", "048", "031")

SETTLE_SECONDS = 30.0


def person(n: int) -> CitizenDetails:
    return CitizenDetails(
        NationalId(f"079190{n:06d}"),
        f"Nguyễn Thị An {chr(65 + n % 26)}",
        date(1990, 1, 1),
        Sex.FEMALE,
        AreaCode(PROVINCES[n % 4]),
    )


def history(registry: Registry, clock: MovableClock, first: int, count: int) -> None:
    """Citizens with a registration, a dose and a declaration each; a risk change."""
    nurse = Request(NURSE)
    for n in range(first, first + count):
        details = person(n)
        registry.population.register_citizen(ADMIN, details)
        site = IdentityAtSite(details.person, details.full_name, details.date_of_birth)
        registry.immunization.register_for_vaccination(nurse, site, None)
        registry.immunization.record_dose(nurse, site, dose("comirnaty", "PF1", clock.now))
        trip = Trip(AreaCode(PROVINCES[n % 4]), AreaCode("092"), clock.now.date(), Transport.CAR)
        registry.mobility.declare_health(Request(OFFICER), details.person, trip, HealthStatement())
        if n % 7 == 0:
            level = RiskLevel(n % 4 + 1)
            effective = clock.now + timedelta(hours=1)
            registry.mobility.assess_risk(ADMIN, AreaCode(PROVINCES[n % 4]), level, effective, "r")
        clock.advance(minutes=3)


@pytest.fixture
def registry(tmp_path: Path, postgres_url: str, clock: MovableClock) -> Iterator[Registry]:
    registry = build_registry(registry_settings(tmp_path, postgres_url), clock)
    registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2030, 1, 1))
    yield registry
    registry.close()


def caught_up(store: RedisStore, registry: Registry, runtime: ProjectionRuntime) -> bool:
    reached = positions(store, runtime.projections[0])
    return reached is not None and all(
        reached[ctx] >= head for ctx, head in registry.heads().items()
    )


def same_as_a_rebuild(registry: Registry, client: redis.Redis, live: RedisStore, ns: str) -> None:
    fresh = ProjectionRuntime(registry, RedisStore(client, ns))
    fresh.catch_up()
    snapshot = live.snapshot(NAME)
    assert normalised(snapshot) == normalised(fresh.store.snapshot(NAME))
    assert any(k.startswith("p0:c:") for k in snapshot)


def test_sigkill_of_the_projector_loses_and_duplicates_nothing(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    registry: Registry,
    clock: MovableClock,
) -> None:
    namespace = f"{redis_prefix}live"
    env = {
        **os.environ,
        "VAXREG_DATA_DIR": str(tmp_path / "var"),
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
        "VAXREG_DATABASE_URL": postgres_url,
        "VAXREG_REDIS_URL": redis_url,
        "VAXREG_REDIS_NAMESPACE": namespace,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-c", "from api.cli.projector import projector; projector()"]
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, namespace)
    runtime = ProjectionRuntime(registry, store)
    first = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: store.meta(NAME) is not None, timeout=SETTLE_SECONDS)
        history(registry, clock, 0, 60)
        time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        history(registry, clock, 60, 20)
    finally:
        if first.poll() is None:
            first.kill()
    second = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: caught_up(store, registry, runtime), timeout=SETTLE_SECONDS)
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        if second.poll() is None:
            second.kill()
    same_as_a_rebuild(registry, client, store, f"{redis_prefix}fresh")
    client.close()


def test_a_flushed_redis_is_rebuilt_by_the_running_projector(
    registry: Registry, clock: MovableClock, throwaway_redis: ThrowawayRedis
) -> None:
    client = redis.Redis.from_url(throwaway_redis.url)
    store = RedisStore(client, "vaxreg")
    runtime = ProjectionRuntime(registry, store, check_interval=0.2)
    history(registry, clock, 0, 15)
    runtime.start()
    try:
        wait_until(lambda: caught_up(store, registry, runtime), timeout=SETTLE_SECONDS)
        client.flushall()
        history(registry, clock, 15, 5)
        wait_until(lambda: caught_up(store, registry, runtime), timeout=SETTLE_SECONDS)
    finally:
        runtime.stop()
    same_as_a_rebuild(registry, client, store, "fresh")
    client.close()


def test_a_rebuild_over_its_citizen_limit_equals_one_within_it_and_the_incremental_build(
    registry: Registry, clock: MovableClock, redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    live = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}live"))
    for first in range(0, 24, 6):
        history(registry, clock, first, 6)
        live.catch_up()
    incremental = normalised(live.store.snapshot(NAME))
    whole = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}whole"))
    whole.catch_up()
    written_out = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}out"))
    projection = written_out.projections[0]
    projection.hold_limit = 3
    seen: list[RebuildProgress] = []
    rebuild(written_out.store, projection, registry.apps, seen.append, page_size=5)
    assert [p.context for p in seen].count(DERIVING) > 3
    assert normalised(written_out.store.snapshot(NAME)) == normalised(whole.store.snapshot(NAME))
    assert normalised(whole.store.snapshot(NAME)) == incremental
    assert any(k.startswith("p0:a:") for k in incremental)
    client.close()


def second_doses(registry: Registry, clock: MovableClock, count: int) -> None:
    clock.advance(days=30)
    for n in range(0, count, 2):
        details = person(n)
        site = IdentityAtSite(details.person, details.full_name, details.date_of_birth)
        registry.immunization.record_dose(Request(NURSE), site, dose("comirnaty", "PF1", clock.now))


def test_a_rebuild_whose_forked_children_replay_shares_equals_one_replaying_alone(
    registry: Registry,
    clock: MovableClock,
    redis_url: str,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(registry.apps["immunization"].recorder, ShareReader)
    history(registry, clock, 0, 24)
    second_doses(registry, clock, 24)
    client = redis.Redis.from_url(redis_url)
    alone = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}alone"))
    rebuild(alone.store, alone.projections[0], registry.apps, share_from=10**9)
    expected = normalised(alone.store.snapshot(NAME))
    assert any(k.startswith("p0:wd:") or k.startswith("p0:a:") for k in expected)

    # Reads of 25 ids: every context in several reads, records across reads. Over its
    # limit after every read: both sides read back what was written out. Decoded two at a
    # time: a record's events fall in different chunks of a read, and over the limit each
    # chunk's reads are prefetched.
    for chunk, limit in itertools.product((engine.REPLAY_CHUNK, 2), (None, 3)):
        with monkeypatch.context() as chunked:
            chunked.setattr(engine, "REPLAY_CHUNK", chunk)
            shared = ProjectionRuntime(
                registry, RedisStore(client, f"{redis_prefix}shared{chunk}-{limit}")
            )
            shared.projections[0].hold_limit = limit
            rebuild(shared.store, shared.projections[0], registry.apps, page_size=1, share_from=1)
        assert normalised(shared.store.snapshot(NAME)) == expected
    assert "forked share" not in caplog.text

    def fail(*args: object) -> None:
        raise RuntimeError("a child that fails")

    unshared = ProjectionRuntime(registry, RedisStore(client, f"{redis_prefix}unshared"))
    monkeypatch.setattr(type(unshared.projections[0]), "replay_share", fail)
    rebuild(unshared.store, unshared.projections[0], registry.apps, page_size=1, share_from=1)
    assert normalised(unshared.store.snapshot(NAME)) == expected
    assert "a forked share failed" in caplog.text
    client.close()
