"""Prometheus metrics: request counts and latency by route template, and projection lag.

`Metrics` is a pure ASGI middleware; labels use the route's path template (never the
actual path, which holds ID numbers), and unmatched paths share one label.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LagSource = Callable[[], dict[str, dict[str, float]]]
"""Projection name -> context -> lag in seconds (filled by the projection engine)."""

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class MetricsRegistry:
    """Counters and histograms of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault((method, route), _Histogram()).observe(seconds)

    def render(self, lag_source: LagSource | None = None) -> str:
        lines = [
            "# HELP vaxreg_http_requests_total HTTP requests by route template and status.",
            "# TYPE vaxreg_http_requests_total counter",
        ]
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((key, list(h.counts), h.total) for key, h in self._latency.items())
        for (method, route, status), count in requests:
            labels = _labels(method=method, route=route, status=str(status))
            lines.append(f"vaxreg_http_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP vaxreg_http_request_duration_seconds HTTP request latency.",
            "# TYPE vaxreg_http_request_duration_seconds histogram",
        ]
        for (method, route), counts, total in latency:
            base = _labels(method=method, route=route)
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'vaxreg_http_request_duration_seconds_bucket{{{base},le="{le}"}} {cumulative}'
                )
            lines.append(f"vaxreg_http_request_duration_seconds_sum{{{base}}} {total:.6f}")
            lines.append(f"vaxreg_http_request_duration_seconds_count{{{base}}} {cumulative}")
        if lag_source is not None:
            lines += [
                "# HELP vaxreg_projection_lag_seconds How far each read model trails its context.",
                "# TYPE vaxreg_projection_lag_seconds gauge",
            ]
            for projection, contexts in sorted(lag_source().items()):
                for context, lag in sorted(contexts.items()):
                    labels = _labels(projection=projection, context=context)
                    lines.append(f"vaxreg_projection_lag_seconds{{{labels}}} {lag:g}")
        return "\n".join(lines) + "\n"


def _labels(**values: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in values.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counts every HTTP request into `registry` once the response has started."""

    def __init__(self, app: ASGIApp, registry: MetricsRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            path = getattr(scope.get("route"), "path_format", None)
            route = path if isinstance(path, str) else UNMATCHED
            self.registry.observe(
                scope.get("method", "-"), route, status, time.perf_counter() - started
            )
