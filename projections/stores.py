"""Read-model stores: where projections keep their views and tracking positions.

Key layout (``ns`` is the store's namespace, ``name`` the projection's name)::

    ns:{name}:meta                     hash: gen, partitions, version, seq
    ns:{name.p<i>}:g<gen>~pos          hash: ~v (commit counter), p:<context> (position)
    ns:{name.p<i>}:g<gen>:<logical>    the projection's own keys

Everything one partition commits (its keys and its positions) shares the hash tag
``{name.p<i>}``, so a batch commit is a single-slot script on Redis Cluster too. Only
switching generations touches several slots; it assumes one Redis node.

A batch commit is guarded twice: the partition's commit counter ``~v`` must equal the
value the writer loaded (a compare-and-set that serialises writers across processes
and is broken on purpose when a generation is retired), and every position it sets
must be above the stored one.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

import redis

if TYPE_CHECKING:
    from projections.pipelined import PipelinedRedis

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]+$")

COMMITTED = 1
"""Result of a partition commit that was applied."""
STALE_VERSION = 0
"""Result of a partition commit refused because another writer got there first."""
ALREADY_APPLIED = -1
"""Result of a partition commit refused because the stored position is not below."""

OpCode: TypeAlias = str
Op: TypeAlias = tuple[OpCode, str, bytes, bytes]
"""A write: (code, physical key, arg, arg). Codes:
S set, D delete, H hset, X hdel, I hincrby, A sadd, R srem, Z zadd (arg=member,
arg2=score), Q zrem."""

_OP_TYPES: dict[str, str] = {
    "S": "string",
    "H": "hash",
    "X": "hash",
    "I": "hash",
    "A": "set",
    "R": "set",
    "Z": "zset",
    "Q": "zset",
}

SnapshotValue: TypeAlias = (
    bytes | dict[bytes, bytes] | frozenset[bytes] | tuple[tuple[bytes, float], ...]
)


class ProjectionTypeError(Exception):
    """A batch would apply an operation to a key holding another type."""


@dataclass(frozen=True)
class GenerationInfo:
    """Which generation of a projection readers see, and how it was built."""

    gen: int
    partitions: int
    version: int


@dataclass
class PartitionState:
    """A partition's commit counter and its position in each context."""

    version: int
    positions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionCommit:
    """One partition's share of a batch: its writes and its new positions."""

    partition: int
    expected_version: int
    positions: Mapping[str, int]
    ops: Sequence[Op]


class ReadModelsUnavailable(RuntimeError):
    """A projection has no current generation: never built, or lost (Redis restarted
    empty) and being rebuilt. Readers raise it rather than answer "not found"."""

    def __init__(self, projection: str) -> None:
        super().__init__(f"the {projection!r} read models are being built")
        self.projection = projection


def check_name(name: str) -> str:
    if not _NAME.match(name):
        msg = f"invalid projection name {name!r}: use letters, digits, '_' and '-'"
        raise ValueError(msg)
    return name


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.match(namespace):
        msg = f"invalid namespace {namespace!r}: use letters, digits and '_', '.', ':', '-'"
        raise ValueError(msg)
    return namespace


class KeyLayout:
    """Maps projections' logical keys to physical keys under a namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)

    def meta(self, name: str) -> str:
        return f"{self.namespace}:{{{name}}}:meta"

    def generation_prefix(self, name: str, gen: int, partition: int) -> str:
        """Prefix shared by a partition's data keys and its positions key."""
        return f"{self.namespace}:{{{name}.p{partition}}}:g{gen}"

    def data_prefix(self, name: str, gen: int, partition: int) -> str:
        return self.generation_prefix(name, gen, partition) + ":"

    def positions(self, name: str, gen: int, partition: int) -> str:
        return self.generation_prefix(name, gen, partition) + "~pos"

    def key(self, name: str, gen: int, partition: int, logical_key: str) -> str:
        return self.data_prefix(name, gen, partition) + logical_key


def _parse_meta(raw: Mapping[bytes, bytes]) -> GenerationInfo | None:
    try:
        return GenerationInfo(
            gen=int(raw[b"gen"]), partitions=int(raw[b"partitions"]), version=int(raw[b"version"])
        )
    except (KeyError, ValueError):
        return None


def _parse_positions(raw: Mapping[bytes, bytes]) -> PartitionState | None:
    version = raw.get(b"~v", b"")
    if not version.isdigit():
        return None
    positions = {
        k[2:].decode(): int(v) for k, v in raw.items() if k.startswith(b"p:") and v.isdigit()
    }
    return PartitionState(version=int(version), positions=positions)


class ReadModelStore(Protocol):
    """What the projection engine needs from a store of read models."""

    layout: KeyLayout

    def meta(self, name: str) -> GenerationInfo | None:
        """The generation readers see, or None if there is none (never built, or lost)."""

    def partition_states(self, name: str, info: GenerationInfo) -> list[PartitionState] | None:
        """Positions of every partition of a generation, or None if any is missing."""

    def new_generation(self, name: str, partitions: int) -> int:
        """Allocate a fresh generation number and create its empty positions."""

    def switch(self, name: str, expected: int | None, new: GenerationInfo) -> bool:
        """Point readers at ``new`` if the current generation is still ``expected``.

        The previous generation's positions are retired in the same step, so a writer
        still targeting it has its next commit refused.
        """

    def drop_generation(self, name: str, gen: int, partitions: int) -> int:
        """Delete every key of a generation; returns how many were deleted."""

    def commit(self, name: str, gen: int, commits: Sequence[PartitionCommit]) -> list[int]:
        """Apply each partition's writes and positions atomically; one result each."""

    def get(self, key: str) -> bytes | None: ...

    def hget(self, key: str, field: bytes) -> bytes | None: ...

    def hgetall(self, key: str) -> dict[bytes, bytes]: ...

    def smembers(self, key: str) -> set[bytes]: ...

    def sismember(self, key: str, member: bytes) -> bool: ...

    def read_many(self, reads: Sequence[tuple[str, str, bytes]]) -> list[object]:
        """Several reads in one round trip: (kind, physical key, field or member or b"").

        Kinds: get, hgetall, smembers, hget, sismember."""

    def snapshot(self, name: str) -> dict[str, SnapshotValue]:
        """All keys of the current generation as ``p<i>:<logical key>`` -> value."""

    def reader(self, versions: Mapping[str, int] | None = None) -> ViewReader:
        """A reader resolving the current generation for API code; with `versions`, a
        generation another version of its projection built reads as not there yet."""


class ViewReader(Protocol):
    """Read access to projections' current generation by logical key."""

    def physical_key(self, projection: str, logical_key: str, partition: int = 0) -> str | None:
        """Physical key in the current generation, or None if there is none."""

    def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None: ...

    def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None: ...

    def hgetall(
        self, projection: str, logical_key: str, partition: int = 0
    ) -> dict[bytes, bytes]: ...

    def smembers(self, projection: str, logical_key: str, partition: int = 0) -> set[bytes]: ...

    def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]: ...


def _encode(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


# ---------------------------------------------------------------------------- memory


class _ZSet:
    """A sorted set: member -> score."""

    __slots__ = ("scores",)

    def __init__(self, scores: Mapping[bytes, float] | None = None) -> None:
        self.scores: dict[bytes, float] = dict(scores or {})


_MemValue: TypeAlias = bytes | dict[bytes, bytes] | set[bytes] | _ZSet


def _type_of(value: _MemValue | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, bytes):
        return "string"
    if isinstance(value, _ZSet):
        return "zset"
    if isinstance(value, dict):
        return "hash"
    return "set"


def _copy(value: _MemValue) -> _MemValue:
    if isinstance(value, bytes):
        return value
    if isinstance(value, _ZSet):
        return _ZSet(value.scores)
    if isinstance(value, dict):
        return dict(value)
    return set(value)


def _apply_op(scratch: dict[str, _MemValue | None], op: Op) -> None:
    code, key, a, b = op
    cur = scratch.get(key)
    expected = _OP_TYPES.get(code)
    if expected is not None and cur is not None and _type_of(cur) != expected:
        msg = f"{code} on {key} holding a {_type_of(cur)}"
        raise ProjectionTypeError(msg)
    if code == "S":
        scratch[key] = a
    elif code == "D":
        scratch[key] = None
    elif code in "HXI":
        h = cur if isinstance(cur, dict) else {}
        if code == "H":
            h[a] = b
        elif code == "X":
            h.pop(a, None)
        else:
            h[a] = str(int(h.get(a, b"0")) + int(b)).encode()
        scratch[key] = h or None
    elif code in "AR":
        s = cur if isinstance(cur, set) else set()
        if code == "A":
            s.add(a)
        else:
            s.discard(a)
        scratch[key] = s or None
    elif code in "ZQ":
        z = cur if isinstance(cur, _ZSet) else _ZSet()
        if code == "Z":
            z.scores[a] = float(b)
        else:
            z.scores.pop(a, None)
        scratch[key] = z if z.scores else None
    else:
        msg = f"unknown op code {code!r}"
        raise ValueError(msg)


def _snapshot_value(value: _MemValue) -> SnapshotValue:
    if isinstance(value, bytes):
        return value
    if isinstance(value, _ZSet):
        return tuple(sorted(value.scores.items(), key=lambda kv: (kv[1], kv[0])))
    if isinstance(value, dict):
        return dict(value)
    return frozenset(value)


_MEMORY_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _renew_memory_store_locks() -> None:
    """In a forked child: the stores' locks, which another thread of the parent may have
    held at the fork and would then never release here, replaced by new ones."""
    for store in list(_MEMORY_STORES):
        store._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_memory_store_locks)


class MemoryStore:
    """In-process store with the same semantics as :class:`RedisStore`.

    Thread-safe; nothing survives the process. Used by the embedded mode and tests. A
    rebuild's forked child may read it (the states of its share of the rebuild's own
    generation, which only the forking thread writes): it does so with a lock of its own.
    """

    def __init__(self, namespace: str = "vaxreg") -> None:
        self.layout = KeyLayout(namespace)
        self._data: dict[str, _MemValue] = {}
        self._lock = threading.RLock()
        _MEMORY_STORES.add(self)

    def flush(self) -> None:
        """Forget everything, like FLUSHALL on a Redis server."""
        with self._lock:
            self._data.clear()

    def meta(self, name: str) -> GenerationInfo | None:
        with self._lock:
            raw = self._data.get(self.layout.meta(name))
            return _parse_meta(raw) if isinstance(raw, dict) else None

    def partition_states(self, name: str, info: GenerationInfo) -> list[PartitionState] | None:
        states = []
        with self._lock:
            for p in range(info.partitions):
                raw = self._data.get(self.layout.positions(name, info.gen, p))
                state = _parse_positions(raw) if isinstance(raw, dict) else None
                if state is None:
                    return None
                states.append(state)
        return states

    def new_generation(self, name: str, partitions: int) -> int:
        with self._lock:
            meta_key = self.layout.meta(name)
            meta = self._data.get(meta_key)
            if not isinstance(meta, dict):
                meta = {}
                self._data[meta_key] = meta
            gen = int(meta.get(b"seq", b"0")) + 1
            meta[b"seq"] = str(gen).encode()
            for p in range(partitions):
                self._data[self.layout.positions(name, gen, p)] = {b"~v": b"1"}
            return gen

    def switch(self, name: str, expected: int | None, new: GenerationInfo) -> bool:
        with self._lock:
            meta_key = self.layout.meta(name)
            meta = self._data.get(meta_key)
            meta = meta if isinstance(meta, dict) else {}
            current = _parse_meta(meta)
            if (current.gen if current else None) != expected:
                return False
            if current is not None:
                for p in range(current.partitions):
                    pos = self._data.get(self.layout.positions(name, current.gen, p))
                    if isinstance(pos, dict):
                        pos[b"~v"] = b"retired"
            meta.update(
                {
                    b"gen": str(new.gen).encode(),
                    b"partitions": str(new.partitions).encode(),
                    b"version": str(new.version).encode(),
                }
            )
            meta.setdefault(b"seq", str(new.gen).encode())
            self._data[meta_key] = meta
            return True

    def drop_generation(self, name: str, gen: int, partitions: int) -> int:
        prefixes = tuple(self.layout.generation_prefix(name, gen, p) for p in range(partitions))
        with self._lock:
            doomed = [
                k
                for k in self._data
                if any(k.startswith(p) and k[len(p) : len(p) + 1] in (":", "~") for p in prefixes)
            ]
            for k in doomed:
                del self._data[k]
        return len(doomed)

    def commit(self, name: str, gen: int, commits: Sequence[PartitionCommit]) -> list[int]:
        results = []
        with self._lock:
            for c in commits:
                results.append(self._commit_one(name, gen, c))
        return results

    def _commit_one(self, name: str, gen: int, c: PartitionCommit) -> int:
        pos_key = self.layout.positions(name, gen, c.partition)
        pos = self._data.get(pos_key)
        if not isinstance(pos, dict) or pos.get(b"~v") != str(c.expected_version).encode():
            return STALE_VERSION
        for context, position in c.positions.items():
            if int(pos.get(b"p:" + context.encode(), b"0")) >= position:
                return ALREADY_APPLIED
        scratch: dict[str, _MemValue | None] = {}
        for op in c.ops:
            if op[1] not in scratch:
                cur = self._data.get(op[1])
                scratch[op[1]] = None if cur is None else _copy(cur)
            _apply_op(scratch, op)
        for key, value in scratch.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
        for context, position in c.positions.items():
            pos[b"p:" + context.encode()] = str(position).encode()
        pos[b"~v"] = str(c.expected_version + 1).encode()
        return COMMITTED

    def _typed(self, key: str, kind: type) -> object:
        value = self._data.get(key)
        if value is not None and not isinstance(value, kind):
            msg = f"{key} holds a {_type_of(value)}"
            raise ProjectionTypeError(msg)
        return value

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._typed(key, bytes)
            return value if isinstance(value, bytes) else None

    def hget(self, key: str, field: bytes) -> bytes | None:
        with self._lock:
            value = self._typed(key, dict)
            return value.get(field) if isinstance(value, dict) else None

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        with self._lock:
            value = self._typed(key, dict)
            return dict(value) if isinstance(value, dict) else {}

    def smembers(self, key: str) -> set[bytes]:
        with self._lock:
            value = self._typed(key, set)
            return set(value) if isinstance(value, set) else set()

    def sismember(self, key: str, member: bytes) -> bool:
        return member in self.smembers(key)

    def read_many(self, reads: Sequence[tuple[str, str, bytes]]) -> list[object]:
        with self._lock:
            return [
                getattr(self, kind)(key, arg)
                if kind in ("hget", "sismember")
                else getattr(self, kind)(key)
                for kind, key, arg in reads
            ]

    def zrangebyscore(
        self, key: str, min_score: float, max_score: float, limit: int
    ) -> list[tuple[bytes, float]]:
        with self._lock:
            value = self._data.get(key)
            if not isinstance(value, _ZSet):
                return []
            items = sorted(value.scores.items(), key=lambda kv: (kv[1], kv[0]))
        return [(m, s) for m, s in items if min_score <= s <= max_score][:limit]

    def physical_keys(self) -> list[str]:
        with self._lock:
            return list(self._data)

    def snapshot(self, name: str) -> dict[str, SnapshotValue]:
        with self._lock:
            info = self.meta(name)
            if info is None:
                return {}
            out: dict[str, SnapshotValue] = {}
            for p in range(info.partitions):
                prefix = self.layout.data_prefix(name, info.gen, p)
                for k, v in self._data.items():
                    if k.startswith(prefix):
                        out[f"p{p}:{k[len(prefix) :]}"] = _snapshot_value(v)
            return out

    def reader(self, versions: Mapping[str, int] | None = None) -> MemoryReader:
        return MemoryReader(self, versions)


class MemoryReader:
    """:class:`ViewReader` over a :class:`MemoryStore` (no caching needed)."""

    def __init__(self, store: MemoryStore, versions: Mapping[str, int] | None = None) -> None:
        self._store = store
        self._versions = dict(versions or {})

    def physical_key(self, projection: str, logical_key: str, partition: int = 0) -> str | None:
        info = self._store.meta(projection)
        if info is None or self._versions.get(projection, info.version) != info.version:
            return None
        return self._store.layout.key(projection, info.gen, partition, logical_key)

    def _data_key(self, projection: str, logical_key: str, partition: int) -> str:
        key = self.physical_key(projection, logical_key, partition)
        if key is None:
            raise ReadModelsUnavailable(projection)
        return key

    def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None:
        key = self._data_key(projection, logical_key, partition)
        return self._store.get(key)

    def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None:
        key = self._data_key(projection, logical_key, partition)
        return self._store.hget(key, _encode(field))

    def hgetall(self, projection: str, logical_key: str, partition: int = 0) -> dict[bytes, bytes]:
        key = self._data_key(projection, logical_key, partition)
        return self._store.hgetall(key)

    def smembers(self, projection: str, logical_key: str, partition: int = 0) -> set[bytes]:
        key = self._data_key(projection, logical_key, partition)
        return self._store.smembers(key)

    def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]:
        key = self._data_key(projection, logical_key, partition)
        return self._store.zrangebyscore(key, min_score, max_score, limit)


# ----------------------------------------------------------------------------- redis

_COMMIT_LUA = """
local v = redis.call('HGET', KEYS[1], '~v')
if v ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do
  local cur = redis.call('HGET', KEYS[1], 'p:' .. ARGV[i])
  if cur and tonumber(cur) >= tonumber(ARGV[i + 1]) then return -1 end
end
local want = {S='string', H='hash', X='hash', I='hash', A='set', R='set', Z='zset', Q='zset'}
local blob = ARGV[3 + 2 * n]
local ops, seen, pos = {}, {}, 1
while pos <= #blob do
  local c, k, la, lb
  c, k, la, lb, pos = struct.unpack('>c1I4I4I4', blob, pos)
  local a = string.sub(blob, pos, pos + la - 1)
  pos = pos + la
  local b = string.sub(blob, pos, pos + lb - 1)
  pos = pos + lb
  local key = KEYS[k]
  local t = seen[key]
  if t == nil then t = redis.call('TYPE', key)['ok'] end
  if c == 'D' then
    t = 'none'
  else
    local w = want[c]
    if c ~= 'S' and t ~= 'none' and t ~= w then
      return redis.error_reply('WRONGTYPE ' .. c .. ' on ' .. key .. ' holding a ' .. t)
    end
    t = w
  end
  seen[key] = t
  ops[#ops + 1] = {c, key, a, b}
end
for _, op in ipairs(ops) do
  local c, k, a, b = op[1], op[2], op[3], op[4]
  if c == 'S' then redis.call('SET', k, a)
  elseif c == 'D' then redis.call('DEL', k)
  elseif c == 'H' then redis.call('HSET', k, a, b)
  elseif c == 'X' then redis.call('HDEL', k, a)
  elseif c == 'I' then redis.call('HINCRBY', k, a, b)
  elseif c == 'A' then redis.call('SADD', k, a)
  elseif c == 'R' then redis.call('SREM', k, a)
  elseif c == 'Z' then redis.call('ZADD', k, b, a)
  elseif c == 'Q' then redis.call('ZREM', k, a)
  end
end
for i = 3, 2 + 2 * n, 2 do
  redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], '~v', tonumber(v) + 1)
return 1
"""

_OP_HEADER = struct.Struct(">cIII")
"""Each op in a commit's payload: code, index into KEYS, lengths of its two arguments."""

_SWITCH_LUA = """
local cur = redis.call('HGET', KEYS[1], 'gen')
if (cur or '') ~= ARGV[1] then return 0 end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], '~v', 'retired') end
end
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'partitions', ARGV[3], 'version', ARGV[4])
redis.call('HSETNX', KEYS[1], 'seq', ARGV[2])
return 1
"""


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisStore:
    """Store on one Redis node (redis-py, synchronous).

    Batch commits are one EVALSHA per partition (pipelined together), which is both
    atomic and a single round trip; MULTI/EXEC would need WATCH plus a read first.
    """

    def __init__(self, client: redis.Redis, namespace: str = "vaxreg") -> None:
        self.client = client
        self.layout = KeyLayout(namespace)
        self._commit = client.register_script(_COMMIT_LUA)
        self._switch = client.register_script(_SWITCH_LUA)

    @classmethod
    def from_url(cls, url: str, namespace: str = "vaxreg") -> RedisStore:
        return cls(redis.Redis.from_url(url), namespace)

    def meta(self, name: str) -> GenerationInfo | None:
        return _parse_meta(cast("dict[bytes, bytes]", self.client.hgetall(self.layout.meta(name))))

    def partition_states(self, name: str, info: GenerationInfo) -> list[PartitionState] | None:
        pipe = self.client.pipeline(transaction=False)
        for p in range(info.partitions):
            pipe.hgetall(self.layout.positions(name, info.gen, p))
        states = []
        for raw in pipe.execute():
            state = _parse_positions(raw)
            if state is None:
                return None
            states.append(state)
        return states

    def new_generation(self, name: str, partitions: int) -> int:
        gen = int(self.client.hincrby(self.layout.meta(name), "seq", 1))
        pipe = self.client.pipeline(transaction=False)
        for p in range(partitions):
            key = self.layout.positions(name, gen, p)
            pipe.delete(key)
            pipe.hset(key, "~v", 1)
        pipe.execute()
        return gen

    def switch(self, name: str, expected: int | None, new: GenerationInfo) -> bool:
        keys = [self.layout.meta(name)]
        current = self.meta(name)
        if current is not None and current.gen == expected:
            keys += [self.layout.positions(name, current.gen, p) for p in range(current.partitions)]
        args = ["" if expected is None else expected, new.gen, new.partitions, new.version]
        return bool(self._switch(keys=keys, args=args))

    def drop_generation(self, name: str, gen: int, partitions: int) -> int:
        deleted = 0
        for p in range(partitions):
            pattern = _glob_escape(self.layout.generation_prefix(name, gen, p)) + "[:~]*"
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self.client.unlink(*batch))
        return deleted

    def commit(self, name: str, gen: int, commits: Sequence[PartitionCommit]) -> list[int]:
        if not commits:
            return []
        pipe = self.client.pipeline(transaction=False)
        for c in commits:
            keys, args = self._commit_args(name, gen, c)
            self._commit(keys=keys, args=args, client=pipe)
        return [int(r) for r in pipe.execute()]

    def _commit_args(
        self, name: str, gen: int, c: PartitionCommit
    ) -> tuple[list[str], list[bytes | str | int]]:
        """KEYS (positions first, then every key written) and ARGV with one payload."""
        keys = [self.layout.positions(name, gen, c.partition)]
        index: dict[str, int] = {}
        args: list[bytes | str | int] = [c.expected_version, len(c.positions)]
        for context, position in c.positions.items():
            args += [context, position]
        pack = _OP_HEADER.pack
        payload: list[bytes] = []
        for code, key, a, b in c.ops:
            i = index.get(key)
            if i is None:
                keys.append(key)
                i = index[key] = len(keys)
            payload += (pack(code.encode(), i, len(a), len(b)), a, b)
        args.append(b"".join(payload))
        return keys, args

    def get(self, key: str) -> bytes | None:
        return cast("bytes | None", self.client.get(key))

    def hget(self, key: str, field: bytes) -> bytes | None:
        return cast("bytes | None", self.client.hget(key, field))

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return cast("dict[bytes, bytes]", self.client.hgetall(key))

    def smembers(self, key: str) -> set[bytes]:
        return cast("set[bytes]", self.client.smembers(key))

    def sismember(self, key: str, member: bytes) -> bool:
        return bool(self.client.sismember(key, member))  # type: ignore[arg-type]

    def read_many(self, reads: Sequence[tuple[str, str, bytes]]) -> list[object]:
        pipe = self.client.pipeline(transaction=False)
        for kind, key, arg in reads:
            if kind in ("hget", "sismember"):
                getattr(pipe, kind)(key, arg)
            else:
                getattr(pipe, kind)(key)
        return list(pipe.execute())

    def snapshot(self, name: str) -> dict[str, SnapshotValue]:
        info = self.meta(name)
        if info is None:
            return {}
        out: dict[str, SnapshotValue] = {}
        for p in range(info.partitions):
            prefix = self.layout.data_prefix(name, info.gen, p)
            keys = [k.decode() for k in self.client.scan_iter(_glob_escape(prefix) + "*", 1000)]
            for key in keys:
                out[f"p{p}:{key[len(prefix) :]}"] = self._read_any(key)
        return out

    def _read_any(self, key: str) -> SnapshotValue:
        kind = self.client.type(key)
        if kind == b"string":
            return self.get(key) or b""
        if kind == b"hash":
            return self.hgetall(key)
        if kind == b"set":
            return frozenset(self.smembers(key))
        if kind == b"zset":
            items = cast(
                "list[tuple[bytes, float]]", self.client.zrange(key, 0, -1, withscores=True)
            )
            return tuple(sorted(((m, float(s)) for m, s in items), key=lambda kv: (kv[1], kv[0])))
        msg = f"unexpected type {kind!r} of {key}"
        raise ProjectionTypeError(msg)

    def reader(self, versions: Mapping[str, int] | None = None) -> RedisReader:
        return RedisReader(self.client, self.layout.namespace, versions=versions)


_META_FIELDS = ("gen", "version")
"""What a reader reads of a projection's meta hash, beside each checked read."""


class _ReaderBase:
    """Generation cache shared by the sync and async readers.

    Reads are pipelined with ``HMGET meta gen version`` in the same round trip; if the
    generation changed since it was cached, the read is repeated once against the new
    generation, so no pub/sub connection is needed and a retired generation is never
    served, nor one built by another version of the projection than the reader's
    ``versions`` say (an old layout or policy): that reads as no generation. The async reader (the
    API's hot path) skips the ``HMGET`` while the generation was seen within ``ttl``
    seconds: for up to ``ttl`` after a switch a value may then come from the previous
    generation, and an empty answer is read again the checked way. :meth:`physical_key`
    (for callers issuing their own commands) trusts the cache for ``ttl`` seconds too.
    """

    def __init__(self, namespace: str, ttl: float, versions: Mapping[str, int] | None) -> None:
        self.layout = KeyLayout(namespace)
        self.ttl = ttl
        self._gens: dict[str, tuple[int | None, float]] = {}
        self.versions = dict(versions or {})
        """The version of each projection this reader understands."""

    def _cached(self, projection: str) -> int | None:
        entry = self._gens.get(projection)
        return None if entry is None else entry[0]

    def _fresh(self, projection: str) -> tuple[int | None, float] | None:
        """The cache entry (generation, when seen) if younger than ttl."""
        entry = self._gens.get(projection)
        if entry is None or time.monotonic() - entry[1] > self.ttl:
            return None
        return entry

    def _remember(self, projection: str, raw: Sequence[bytes | None]) -> int | None:
        """The generation from a reply to :data:`_META_FIELDS`, None unless readable."""
        raw_gen, raw_version = raw
        expected = self.versions.get(projection)
        readable = expected is None or raw_version == str(expected).encode()
        gen = int(raw_gen) if raw_gen and readable else None
        self._gens[projection] = (gen, time.monotonic())
        return gen

    def _key(self, projection: str, gen: int | None, logical_key: str, partition: int) -> str:
        # A projection with no generation yet reads a key no generation uses.
        return self.layout.key(projection, gen or 0, partition, logical_key)


_Command: TypeAlias = tuple[str, tuple[bytes | str | float, ...]]


def _zrange_command(
    min_score: float, max_score: float, limit: int
) -> tuple[str, tuple[bytes | str | float, ...]]:
    return ("ZRANGEBYSCORE", (min_score, max_score, "WITHSCORES", "LIMIT", 0, limit))


def _pairs(raw: Iterable[Any] | None) -> list[tuple[bytes, float]]:
    """Member/score pairs from either a flat reply or one already paired by redis-py."""
    items = list(raw or [])
    if items and isinstance(items[0], list | tuple):
        return [(bytes(m), float(s)) for m, s in items]
    return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


def _as_hash(raw: object) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return raw
    items = list(raw) if isinstance(raw, list) else []
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}


class RedisReader(_ReaderBase):
    """:class:`ViewReader` on a synchronous redis-py client: one round trip per read."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "vaxreg",
        ttl: float = 1.0,
        versions: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(namespace, ttl, versions)
        self.client = client

    def generation(self, projection: str) -> int | None:
        raw = self.client.hmget(self.layout.meta(projection), _META_FIELDS)
        return self._remember(projection, cast("list[bytes | None]", raw))

    def physical_key(self, projection: str, logical_key: str, partition: int = 0) -> str | None:
        entry = self._fresh(projection)
        gen = entry[0] if entry else self.generation(projection)
        return None if gen is None else self._key(projection, gen, logical_key, partition)

    def _read(self, projection: str, logical_key: str, partition: int, cmd: _Command) -> object:
        gen = self._cached(projection)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.layout.meta(projection), _META_FIELDS)
        key = self._key(projection, gen, logical_key, partition)
        pipe.execute_command(cmd[0], key, *cmd[1])  # type: ignore[no-untyped-call]
        raw_meta, value = pipe.execute()
        current = self._remember(projection, raw_meta)
        if current is None:
            raise ReadModelsUnavailable(projection)
        if current == gen:
            return value
        key = self._key(projection, current, logical_key, partition)
        return self.client.execute_command(  # type: ignore[no-untyped-call]
            cmd[0], key, *cmd[1]
        )

    def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None:
        value = self._read(projection, logical_key, partition, ("GET", ()))
        return value if isinstance(value, bytes) else None

    def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None:
        value = self._read(projection, logical_key, partition, ("HGET", (field,)))
        return value if isinstance(value, bytes) else None

    def hgetall(self, projection: str, logical_key: str, partition: int = 0) -> dict[bytes, bytes]:
        return _as_hash(self._read(projection, logical_key, partition, ("HGETALL", ())))

    def smembers(self, projection: str, logical_key: str, partition: int = 0) -> set[bytes]:
        value = self._read(projection, logical_key, partition, ("SMEMBERS", ()))
        return set(value) if isinstance(value, set | list) else set()

    def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]:
        cmd = _zrange_command(min_score, max_score, limit)
        value = self._read(projection, logical_key, partition, cmd)
        return _pairs(value if isinstance(value, list) else None)


class AsyncRedisReader(_ReaderBase):
    """The same reader for the HTTP API, on a `PipelinedRedis` (one connection per event
    loop that concurrent requests share)."""

    def __init__(
        self,
        client: PipelinedRedis,
        namespace: str = "vaxreg",
        ttl: float = 1.0,
        versions: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(namespace, ttl, versions)
        self.client = client

    async def generation(self, projection: str) -> int | None:
        raw = await self.client.execute_command(
            "HMGET", self.layout.meta(projection), *_META_FIELDS
        )
        return self._remember(projection, cast("list[bytes | None]", raw))

    async def physical_key(
        self, projection: str, logical_key: str, partition: int = 0
    ) -> str | None:
        entry = self._fresh(projection)
        gen = entry[0] if entry else await self.generation(projection)
        return None if gen is None else self._key(projection, gen, logical_key, partition)

    async def _read(
        self, projection: str, logical_key: str, partition: int, cmd: _Command
    ) -> object:
        fresh = self._fresh(projection)
        if fresh is not None and fresh[0] is not None:
            key = self._key(projection, fresh[0], logical_key, partition)
            found = await self.client.execute_command(cmd[0], key, *cmd[1])
            if found:
                return found
        gen = self._cached(projection)
        raw_meta, value = await self.client.execute_many(
            [
                ("HMGET", self.layout.meta(projection), *_META_FIELDS),
                (cmd[0], self._key(projection, gen, logical_key, partition), *cmd[1]),
            ]
        )
        current = self._remember(projection, raw_meta)
        if current is None:
            raise ReadModelsUnavailable(projection)
        if current == gen:
            return value
        key = self._key(projection, current, logical_key, partition)
        return await self.client.execute_command(cmd[0], key, *cmd[1])

    async def get(self, projection: str, logical_key: str, partition: int = 0) -> bytes | None:
        value = await self._read(projection, logical_key, partition, ("GET", ()))
        return value if isinstance(value, bytes) else None

    async def hget(
        self, projection: str, logical_key: str, field: bytes | str, partition: int = 0
    ) -> bytes | None:
        value = await self._read(projection, logical_key, partition, ("HGET", (field,)))
        return value if isinstance(value, bytes) else None

    async def hgetall(
        self, projection: str, logical_key: str, partition: int = 0
    ) -> dict[bytes, bytes]:
        return _as_hash(await self._read(projection, logical_key, partition, ("HGETALL", ())))

    async def smembers(self, projection: str, logical_key: str, partition: int = 0) -> set[bytes]:
        value = await self._read(projection, logical_key, partition, ("SMEMBERS", ()))
        return set(value) if isinstance(value, set | list) else set()

    async def zrangebyscore(
        self,
        projection: str,
        logical_key: str,
        min_score: float,
        max_score: float,
        limit: int = 100,
        partition: int = 0,
    ) -> list[tuple[bytes, float]]:
        cmd = _zrange_command(min_score, max_score, limit)
        value = await self._read(projection, logical_key, partition, cmd)
        return _pairs(value if isinstance(value, list) else None)
