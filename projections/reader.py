"""The read-model queries the API, the CLI and the benchmarks use.

`ReadModels` is asynchronous (the API): on Redis it reads through `AsyncRedisReader`
(one round trip per read, following generation switches); on the in-process
`MemoryStore` it reads the store directly. `SyncReadModels` answers the same queries
synchronously. Both take "now" from the caller, so tests drive time with a clock.

Hot path: ``await read_models.checkpoint_document(pseudonym, now)`` is one HGET, an
inflate of the value and a byte-level pick of the period in force (see
:mod:`projections.models.checkpoint`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from domain.checkpoint_policy import DEFAULT_POLICY, Policy
from domain.clock import local_day
from domain.vaccines import CATALOGUE
from projections.engine import Lag, Projection, partition_for, wait_for
from projections.models import statistics
from projections.models.arrivals import parse_arrival
from projections.models.checkpoint import level_at, pick
from projections.models.eligibility import eligibility
from projections.models.projection import (
    NAME,
    RISK_KEY,
    CitizenProjection,
    citizen_bucket,
    citizen_field,
    declaration_bucket,
    decode_state,
    risk_book,
    unpack,
)
from projections.models.state import day_start_us, from_us, us
from projections.pipelined import PipelinedRedis
from projections.stores import AsyncRedisReader, ReadModelStore, RedisStore, ViewReader
from projections.worker import ProjectionWorker

MAX_DAYS = 92
"""The longest range of days a statistics query covers."""
MAX_ITEMS = 1000


class _AsyncViewReader(Protocol):
    async def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None: ...

    async def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None: ...

    async def hgetall(
        self, projection: str, logical_key: str, partition: int = 0
    ) -> dict[bytes, bytes]: ...

    async def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]: ...


class _InProcess:
    """The async reader interface over a synchronous in-process reader."""

    def __init__(self, reader: ViewReader) -> None:
        self._reader = reader

    async def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None:
        return self._reader.get(projection, logical_key, partition)

    async def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None:
        return self._reader.hget(projection, logical_key, field, partition)

    async def hgetall(
        self, projection: str, logical_key: str, partition: int = 0
    ) -> dict[bytes, bytes]:
        return self._reader.hgetall(projection, logical_key, partition)

    async def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]:
        return self._reader.zrangebyscore(
            projection, logical_key, min_score, max_score, limit, partition
        )


def days_between(first: date, last: date) -> list[date]:
    if last < first or (last - first).days >= MAX_DAYS:
        raise ValueError(f"a range of 1-{MAX_DAYS} days is expected")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _counters(raw: Iterable[Mapping[bytes, bytes]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in raw:
        for field, value in part.items():
            count = int(value)
            if count:
                key = field.decode()
                out[key] = out.get(key, 0) + count
    return out


def _nested(counters: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``a|b -> n`` as ``{a: {b: n}}``."""
    out: dict[str, dict[str, int]] = {}
    for field, count in sorted(counters.items()):
        outer, _, inner = field.partition("|")
        out.setdefault(outer, {})[inner] = count
    return out


ARRIVALS_SCAN_MOST = 20 * MAX_ITEMS
"""Entries of an area's arrivals a request reads at most per partition. Entries of
travellers from areas not at a high level now stay until their declarations end; so
many of them before the others would hide those from one request."""
_FETCH_GROWTH = 4


def _fetch_more(
    found: Sequence[object], members: Sequence[object], wanted: int, fetched: int
) -> bool:
    """Whether an arrivals list should read further: fewer travellers than wanted passed
    the risk filter, the set may hold more than was read, and the scan may grow."""
    return len(found) < wanted and len(members) == fetched < ARRIVALS_SCAN_MOST


def _arrivals(
    members: Iterable[tuple[bytes, float]], risk: Mapping[bytes, bytes], now: int, policy: Policy
) -> list[dict[str, Any]]:
    book = risk_book(risk)
    out = []
    for member, score in members:
        origin, pseudonym = parse_arrival(member)
        level = level_at(book, origin, now)
        if level in policy.high_risk_levels:
            out.append(
                {
                    "citizen": pseudonym,
                    "origin": origin,
                    "origin_risk_level": level,
                    "valid_until": from_us(int(score)).isoformat(),
                }
            )
    return out


def _work_list(
    unit: str,
    waiting: Iterable[tuple[bytes, float]],
    due: Iterable[tuple[bytes, float]],
    now: datetime,
) -> dict[str, Any]:
    today = day_start_us(local_day(now))
    first = []
    for member, score in waiting:
        pseudonym, _, screening = member.decode().partition("|")
        first.append(
            {
                "citizen": pseudonym,
                "screening": None if screening == "-" else screening,
                "since": from_us(int(score)).isoformat(),
            }
        )
    doses = []
    for member, score in due:
        pseudonym, _, number = member.decode().partition("|")
        due_on = local_day(from_us(int(score)))
        doses.append(
            {
                "citizen": pseudonym,
                "dose_number": int(number),
                "due_on": due_on.isoformat(),
                "overdue": score < today,
            }
        )
    return {"unit": unit, "awaiting_first_dose": first, "doses_due": doses}


class _Base:
    def __init__(
        self,
        store: ReadModelStore,
        projections: Sequence[Projection],
        worker: ProjectionWorker | None,
    ) -> None:
        self.store = store
        self.projections = list(projections)
        self.versions = {p.name: p.version for p in self.projections}
        """Generations another version built (an old layout or policy) read as being rebuilt."""
        self.worker = worker
        citizens = next(p for p in self.projections if p.name == NAME)
        self.partitions = citizens.partitions
        self.catalogue, self.policy = CATALOGUE, DEFAULT_POLICY
        """What eligibility and arrivals are finished with: what the projection derives with."""
        if isinstance(citizens, CitizenProjection):
            self.catalogue, self.policy = citizens.catalogue, citizens.policy

    def _partition(self, pseudonym: str) -> int:
        return partition_for(pseudonym, self.partitions)

    def lag(self) -> dict[str, dict[str, Lag]]:
        """Events and seconds behind, per projection and context (reads the event store)."""
        if self.worker is None:
            raise RuntimeError("lag needs the applications: build the reader with a worker")
        return self.worker.lag()


class ReadModels(_Base):
    """Asynchronous queries; `start` / `close` run an embedded worker when there is one."""

    def __init__(
        self,
        store: ReadModelStore,
        projections: Sequence[Projection],
        worker: ProjectionWorker | None = None,
        *,
        async_client: PipelinedRedis | None = None,
        run_worker: bool = False,
    ) -> None:
        super().__init__(store, projections, worker)
        self._run_worker = run_worker and worker is not None
        self._started = False
        self._inline = threading.Lock()
        self._client = async_client
        self._reader: _AsyncViewReader
        if isinstance(store, RedisStore):
            if async_client is None:
                raise ValueError("reading a RedisStore asynchronously needs an async client")
            self._reader = AsyncRedisReader(
                async_client, store.layout.namespace, versions=self.versions
            )
        else:
            self._reader = _InProcess(store.reader(self.versions))

    def start(self) -> None:
        """Start the embedded worker (in-process store); nothing to do on Redis."""
        if self._run_worker and self.worker is not None and not self._started:
            self.worker.start()
            self._started = True

    def close(self) -> None:
        if self._started and self.worker is not None:
            self.worker.stop()
            self._started = False

    async def aclose(self) -> None:
        """Close the Redis connection of the running event loop, if there is one."""
        if self._client is not None:
            await self._client.aclose()

    def _catch_up(self) -> None:
        with self._inline:
            if self.worker is not None and not self._started:
                self.worker.catch_up()

    async def _citizen(self, pseudonym: str) -> bytes | None:
        """A citizen's stored value: one read."""
        return await self._reader.hget(
            NAME, citizen_bucket(pseudonym), citizen_field(pseudonym), self._partition(pseudonym)
        )

    async def checkpoint_document(self, pseudonym: str, now: datetime) -> bytes | None:
        """The serialised checkpoint document in force at `now`, None if there is none."""
        value = await self._citizen(pseudonym)
        return pick(unpack(value), us(now)) if value else None

    async def declaration_owner(self, declaration_id: UUID) -> str | None:
        bucket = declaration_bucket(declaration_id)
        for partition in range(self.partitions):
            owner = await self._reader.hget(NAME, bucket, declaration_id.bytes, partition)
            if owner:
                return owner.hex()
        return None

    async def checkpoint_by_declaration(self, declaration_id: UUID, now: datetime) -> bytes | None:
        owner = await self.declaration_owner(declaration_id)
        return None if owner is None else await self.checkpoint_document(owner, now)

    async def eligibility(self, pseudonym: str, now: datetime) -> dict[str, Any] | None:
        value = await self._citizen(pseudonym)
        return eligibility(decode_state(value), self.catalogue, local_day(now)) if value else None

    async def _all_partitions(self, key: str) -> list[dict[bytes, bytes]]:
        return list(
            await asyncio.gather(
                *(self._reader.hgetall(NAME, key, p) for p in range(self.partitions))
            )
        )

    async def doses(self, first: date, last: date) -> dict[str, dict[str, dict[str, int]]]:
        """Doses per local day, province and product."""
        out = {}
        for day in days_between(first, last):
            counters = _counters(await self._all_partitions(f"sd:{day}"))
            if counters:
                out[day.isoformat()] = _nested(counters)
        return out

    async def coverage(self) -> dict[str, dict[str, dict[str, float]]]:
        """People with a first dose, a complete series and a booster, and the dropout rate,
        per province and age band."""
        return statistics.coverage(_counters(await self._all_partitions("sp")))

    async def checkpoints(self, first: date, last: date) -> dict[str, dict[str, dict[str, int]]]:
        """Declarations and verdicts per local day and checkpoint."""
        out = {}
        for day in days_between(first, last):
            counters = _counters(await self._all_partitions(f"sc:{day}"))
            if counters:
                out[day.isoformat()] = _nested(counters)
        return out

    async def arrivals(
        self, area: str, now: datetime, limit: int = MAX_ITEMS
    ) -> list[dict[str, Any]]:
        """Travellers with a valid declaration to `area` from an area at a high level now."""
        out: list[dict[str, Any]] = []
        for p in range(self.partitions):
            wanted, fetch = limit - len(out), limit
            if wanted <= 0:
                break
            risk, members = await asyncio.gather(
                self._reader.hgetall(NAME, RISK_KEY, p),
                self._reader.zrangebyscore(NAME, f"a:{area}", us(now) + 1, float("inf"), fetch, p),
            )
            found = _arrivals(members, risk, us(now), self.policy)
            while _fetch_more(found, members, wanted, fetch):
                fetch = min(fetch * _FETCH_GROWTH, ARRIVALS_SCAN_MOST)
                members = await self._reader.zrangebyscore(
                    NAME, f"a:{area}", us(now) + 1, float("inf"), fetch, p
                )
                found = _arrivals(members, risk, us(now), self.policy)
            out += found[:wanted]
        return out

    async def work_list(self, unit: str, now: datetime, limit: int = MAX_ITEMS) -> dict[str, Any]:
        waiting: list[tuple[bytes, float]] = []
        due: list[tuple[bytes, float]] = []
        inf = float("inf")
        for p in range(self.partitions):
            w, d = await asyncio.gather(
                self._reader.zrangebyscore(NAME, f"wf:{unit}", -inf, inf, limit, p),
                self._reader.zrangebyscore(NAME, f"wd:{unit}", -inf, inf, limit, p),
            )
            waiting += w
            due += d
        return _work_list(unit, waiting[:limit], sorted(due, key=lambda x: x[1])[:limit], now)

    async def wait(self, position: str, timeout: float) -> None:
        """Return once every projection has reached `position`; TimeoutError otherwise.

        Embedded read models whose worker was not started are caught up here, inline."""
        if self._run_worker and not self._started:
            await asyncio.to_thread(self._catch_up)
        await asyncio.to_thread(wait_for, self.store, self.projections, position, timeout)


class SyncReadModels(_Base):
    """The same queries, synchronously (CLI, benchmarks, tests)."""

    def __init__(
        self,
        store: ReadModelStore,
        projections: Sequence[Projection],
        worker: ProjectionWorker | None = None,
    ) -> None:
        super().__init__(store, projections, worker)
        self._reader = store.reader(self.versions)

    def _citizen(self, pseudonym: str) -> bytes | None:
        return self._reader.hget(
            NAME, citizen_bucket(pseudonym), citizen_field(pseudonym), self._partition(pseudonym)
        )

    def checkpoint_document(self, pseudonym: str, now: datetime) -> bytes | None:
        value = self._citizen(pseudonym)
        return pick(unpack(value), us(now)) if value else None

    def checkpoint_by_declaration(self, declaration_id: UUID, now: datetime) -> bytes | None:
        bucket = declaration_bucket(declaration_id)
        for partition in range(self.partitions):
            owner = self._reader.hget(NAME, bucket, declaration_id.bytes, partition)
            if owner:
                return self.checkpoint_document(owner.hex(), now)
        return None

    def eligibility(self, pseudonym: str, now: datetime) -> dict[str, Any] | None:
        value = self._citizen(pseudonym)
        return eligibility(decode_state(value), self.catalogue, local_day(now)) if value else None

    def _all_partitions(self, key: str) -> list[dict[bytes, bytes]]:
        return [self._reader.hgetall(NAME, key, p) for p in range(self.partitions)]

    def doses(self, first: date, last: date) -> dict[str, dict[str, dict[str, int]]]:
        out = {}
        for day in days_between(first, last):
            counters = _counters(self._all_partitions(f"sd:{day}"))
            if counters:
                out[day.isoformat()] = _nested(counters)
        return out

    def coverage(self) -> dict[str, dict[str, dict[str, float]]]:
        return statistics.coverage(_counters(self._all_partitions("sp")))

    def checkpoints(self, first: date, last: date) -> dict[str, dict[str, dict[str, int]]]:
        out = {}
        for day in days_between(first, last):
            counters = _counters(self._all_partitions(f"sc:{day}"))
            if counters:
                out[day.isoformat()] = _nested(counters)
        return out

    def arrivals(self, area: str, now: datetime, limit: int = MAX_ITEMS) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in range(self.partitions):
            wanted, fetch = limit - len(out), limit
            if wanted <= 0:
                break
            risk = self._reader.hgetall(NAME, RISK_KEY, p)
            while True:
                members = self._reader.zrangebyscore(
                    NAME, f"a:{area}", us(now) + 1, float("inf"), fetch, p
                )
                found = _arrivals(members, risk, us(now), self.policy)
                if not _fetch_more(found, members, wanted, fetch):
                    break
                fetch = min(fetch * _FETCH_GROWTH, ARRIVALS_SCAN_MOST)
            out += found[:wanted]
        return out

    def work_list(self, unit: str, now: datetime, limit: int = MAX_ITEMS) -> dict[str, Any]:
        inf = float("inf")
        waiting: list[tuple[bytes, float]] = []
        due: list[tuple[bytes, float]] = []
        for p in range(self.partitions):
            waiting += self._reader.zrangebyscore(NAME, f"wf:{unit}", -inf, inf, limit, p)
            due += self._reader.zrangebyscore(NAME, f"wd:{unit}", -inf, inf, limit, p)
        return _work_list(unit, waiting[:limit], sorted(due, key=lambda x: x[1])[:limit], now)

    def wait(self, position: str, timeout: float) -> None:
        wait_for(self.store, self.projections, position, timeout)
