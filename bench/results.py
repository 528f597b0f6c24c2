"""Benchmark results: latency recording, the JSON shape of a result, and printing.

A result is one JSON object per scenario (see `Result`). Conventions for `details`,
which `bench.report` turns into plots:

- `details["series"]`: a list of `SeriesPoint` (throughput and latency per concurrency);
- `details["timeline"]`: a list of `LagPoint` (lag against time into the run);
- `details["scaling"]`: a list of `ScalePoint` (time and rate per data size).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NotRequired, TypedDict

PERCENTILES = (50.0, 95.0, 99.0)


class SeriesPoint(TypedDict):
    concurrency: int
    throughput: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: NotRequired[int]


class LagPoint(TypedDict):
    t_s: float
    lag_ms: float


class ScalePoint(TypedDict):
    size: int
    seconds: float
    rate: float


def exact_percentile(sorted_values: list[float], percentile: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `percentile`% at or below it."""
    if not sorted_values:
        raise ValueError("no samples")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile {percentile} is outside 0-100")
    rank = max(1, math.ceil(percentile / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyRecorder:
    """Records latencies in milliseconds and answers percentiles.

    Keeps every sample up to `exact_limit` (percentiles are then exact); beyond that it
    answers from a log-bucketed histogram whose buckets are `precision` wide relative to
    their value (HDR style: relative error of a reported value is at most `precision`/2).
    """

    def __init__(
        self, *, precision: float = 0.01, exact_limit: int = 100_000, lowest_ms: float = 0.001
    ) -> None:
        if not 0.0 < precision < 1.0:
            raise ValueError("precision must be between 0 and 1")
        self.precision = precision
        self.exact_limit = exact_limit
        self.lowest_ms = lowest_ms
        self._log_base = math.log1p(precision)
        self._buckets: dict[int, int] = {}
        self._samples: list[float] | None = []
        self.count = 0
        self.min_ms = math.inf
        self.max_ms = 0.0
        self.total_ms = 0.0

    def _bucket(self, value_ms: float) -> int:
        return math.floor(math.log(max(value_ms, self.lowest_ms) / self.lowest_ms) / self._log_base)

    def _bucket_value(self, index: int) -> float:
        """The geometric middle of a bucket, within `precision`/2 of anything in it."""
        return self.lowest_ms * math.exp((index + 0.5) * self._log_base)

    def record(self, value_ms: float) -> None:
        self.count += 1
        self.total_ms += value_ms
        self.min_ms = min(self.min_ms, value_ms)
        self.max_ms = max(self.max_ms, value_ms)
        index = self._bucket(value_ms)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        if self._samples is not None:
            if len(self._samples) < self.exact_limit:
                self._samples.append(value_ms)
            else:
                self._samples = None

    def record_many(self, values_ms: Iterable[float]) -> None:
        for value in values_ms:
            self.record(value)

    def merge(self, other: LatencyRecorder) -> None:
        """Adds another recorder's samples (same precision and lowest value)."""
        if (other.precision, other.lowest_ms) != (self.precision, self.lowest_ms):
            raise ValueError("recorders with different bucketing cannot be merged")
        for index, n in other._buckets.items():
            self._buckets[index] = self._buckets.get(index, 0) + n
        if (
            self._samples is not None
            and other._samples is not None
            and len(self._samples) + len(other._samples) <= self.exact_limit
        ):
            self._samples.extend(other._samples)
        else:
            self._samples = None
        self.count += other.count
        self.total_ms += other.total_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    @property
    def exact(self) -> bool:
        return self._samples is not None

    def percentile(self, percentile: float) -> float | None:
        """The latency at `percentile` in ms, or None when nothing was recorded."""
        if self.count == 0:
            return None
        if self._samples is not None:
            return exact_percentile(sorted(self._samples), percentile)
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile {percentile} is outside 0-100")
        rank = max(1, math.ceil(percentile / 100.0 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(max(self._bucket_value(index), self.min_ms), self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float | None]:
        """p50/p95/p99 in ms under the `Result` field names."""
        values = {f"p{p:g}_ms": self.percentile(p) for p in PERCENTILES}
        return {k: None if v is None else round(v, 4) for k, v in values.items()}


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info(extra_versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Cores, memory, CPU model and software versions of the machine running the benchmark."""
    mem_kib = _first_line("/proc/meminfo", "MemTotal")
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        **{
            name: _version(name)
            for name in ("eventsourcing", "psycopg", "redis", "uvicorn", "fastapi", "starlette")
        },
    }
    versions.update(extra_versions or {})
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "cpu_model": _first_line("/proc/cpuinfo", "model name") or platform.processor() or None,
        "platform": platform.platform(),
        "versions": versions,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Result:
    """One scenario's figure, its ceiling measured in the same run, and their ratio.

    `ratio` is filled in from `value / ceiling` when both are given and it is left None.
    """

    scenario: str
    value: float
    unit: str
    ceiling: float | None = None
    ceiling_unit: str | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    goal: str = ""
    met: bool | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=now_iso)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.ceiling:
            self.ratio = self.value / self.ceiling

    def with_latency(self, recorder: LatencyRecorder) -> Result:
        summary = recorder.summary()
        self.p50_ms, self.p95_ms, self.p99_ms = (
            summary["p50_ms"],
            summary["p95_ms"],
            summary["p99_ms"],
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json(cls, line: str) -> Result:
        return cls.from_dict(json.loads(line))


def read_results(path: str) -> list[Result]:
    """Results from a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [Result.from_json(line) for line in f if line.strip()]


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 99.95:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_result(result: Result) -> str:
    """A few human-readable lines for a terminal."""
    lines = [f"{result.scenario}: {format_number(result.value)} {result.unit}"]
    if result.ceiling is not None:
        ratio = f" (ratio {result.ratio:.2f})" if result.ratio is not None else ""
        ceiling_unit = result.ceiling_unit or result.unit
        lines.append(f"  ceiling: {format_number(result.ceiling)} {ceiling_unit}{ratio}")
    if result.p50_ms is not None:
        lines.append(
            "  latency ms: "
            f"p50 {format_number(result.p50_ms)}  p95 {format_number(result.p95_ms)}  "
            f"p99 {format_number(result.p99_ms)}"
        )
    if result.goal:
        verdict = {True: "met", False: "NOT met", None: "not judged"}[result.met]
        lines.append(f"  goal: {result.goal} - {verdict}")
    for key, value in result.details.items():
        if isinstance(value, bool | str) or value is None:
            lines.append(f"  {key}: {value}")
        elif isinstance(value, int | float):
            lines.append(f"  {key}: {format_number(value)}")
        elif (
            isinstance(value, list)
            and len(value) <= 10
            and all(isinstance(v, int | float) for v in value)
        ):
            lines.append(f"  {key}: {', '.join(format_number(v) for v in value)}")
        elif isinstance(value, list):
            lines.append(f"  {key}: {len(value)} points")
    return "\n".join(lines)


def append_results(results: Iterable[Result], path: Path) -> None:
    """Appends results to a JSON-lines file."""
    with path.open("a", encoding="utf-8") as f:
        f.writelines(r.to_json() + "\n" for r in results)
