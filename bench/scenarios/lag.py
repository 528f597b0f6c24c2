"""`lag`: how long a committed command takes to show in the read models, under a steady
open-loop command load through the API while the projection worker follows the store.

One watcher thread samples, every few milliseconds, the immunization store's head (the
highest committed notification id) and the lowest position the read models following
that context have reached. A command's lag is the time from the first sample whose head
covers its position to the first sample whose read-model position does; both sides are
seen by the same clock at the same resolution, so neither the HTTP round trip nor the
client's clock enters the figure. Events behind is head minus reached at each sample.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bench.harness import BenchContext, scenario
from bench.loadgen import Request, Response, run_open_loop
from bench.results import LagPoint, LatencyRecorder, Result
from bench.scenarios import _fixtures as fx
from bench.scenarios.doses import DOSE_PATH, dose_body

GOAL_P99_MS = 100.0
SAMPLE_INTERVAL_S = 0.003
TIMELINE_BUCKET_S = 0.25
UNITS = 16


@dataclass(frozen=True)
class Sample:
    t: float
    head: int
    reached: int


class PositionWatch:
    """Samples `head()` and `reached()` every `interval_s` in a thread until stopped."""

    def __init__(
        self,
        head: Callable[[], int],
        reached: Callable[[], int],
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self._head = head
        self._reached = reached
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self.samples: list[Sample] = []
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                head = self._head()
                reached = self._reached()
                self.samples.append(Sample(t, head, reached))
                self._stop.wait(max(0.0, self._interval - (time.perf_counter() - t)))
        except BaseException as error:
            self.error = error

    def start(self) -> PositionWatch:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.error is not None:
            raise self.error
        return self.samples


def first_times(samples: Sequence[Sample], field: str, positions: Iterable[int]) -> list[float]:
    """For each position: when `field` first reached it (inf: never)."""
    running = list(itertools.accumulate((getattr(s, field) for s in samples), max))
    times = []
    for position in positions:
        i = bisect.bisect_left(running, position)
        times.append(samples[i].t if i < len(samples) else math.inf)
    return times


@dataclass(frozen=True)
class CommandLag:
    position: int
    committed_at: float
    lag_ms: float


def command_lags(samples: Sequence[Sample], positions: Iterable[int]) -> list[CommandLag]:
    """The lag of each command position seen committed during the sampling."""
    wanted = sorted(set(positions))
    committed = first_times(samples, "head", wanted)
    visible = first_times(samples, "reached", wanted)
    return [
        CommandLag(p, c, (v - c) * 1000.0)
        for p, c, v in zip(wanted, committed, visible, strict=True)
        if math.isfinite(c) and math.isfinite(v)
    ]


def timeline(lags: Sequence[CommandLag], start: float, bucket_s: float) -> list[LagPoint]:
    """The worst lag of the commands committed in each `bucket_s` window."""
    points: list[LagPoint] = []
    for bucket, group in itertools.groupby(
        lags, key=lambda c: int((c.committed_at - start) / bucket_s)
    ):
        worst = max(c.lag_ms for c in group)
        points.append({"t_s": round(bucket * bucket_s, 3), "lag_ms": round(worst, 3)})
    return points


def behind(samples: Sequence[Sample]) -> LatencyRecorder:
    """Events behind at each sample, in a recorder for its percentiles."""
    recorder = LatencyRecorder(lowest_ms=1.0)
    recorder.record_many(max(s.head - s.reached, 0) for s in samples)
    return recorder


def position_number(position: str, context: str) -> int | None:
    """The notification id of `context` in a command's answer (`context:id`)."""
    name, _, number = position.rpartition(":")
    return int(number) if name == context and number.isdigit() else None


class Positions:
    """Collects the immunization positions of the 201 answers."""

    def __init__(self) -> None:
        self.positions: list[int] = []

    def hook(self, response: Response) -> None:
        if response.status != 201:
            return
        body: dict[str, Any] = json.loads(response.body)
        number = position_number(str(body.get("position", "")), "immunization")
        if number is not None:
            self.positions.append(number)


def requests(
    run_id: str, citizens: Sequence[fx.Citizen], tokens: Sequence[str], lots: Sequence[str]
) -> Callable[[int], Request]:
    given_at = fx.given_at_today()

    def make(index: int) -> Request:
        client = index % len(tokens)
        return Request(
            "POST",
            DOSE_PATH,
            dose_body(citizens[index], lots[client], given_at),
            {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {tokens[client]}",
                "Idempotency-Key": f"{run_id}-{index}",
            },
        )

    return make


def offered_load(
    url: str,
    make: Callable[[int], Request],
    *,
    rate: float,
    duration_s: float,
    positions: Positions,
) -> dict[str, Any]:
    """Runs the open loop; an API that cannot keep up makes the generator give up at its
    deadline, and the lags of the commands answered until then still stand.
    """
    started = time.perf_counter()
    try:
        load = run_open_loop(
            url,
            make,
            rate=rate,
            duration_s=duration_s,
            max_in_flight=64,
            timeout_s=5.0,
            on_response=positions.hook,
        )
    except TimeoutError:
        elapsed = time.perf_counter() - started
        return {
            "kept_up": False,
            "rate_achieved": round(len(positions.positions) / elapsed, 1),
            "commands": len(positions.positions),
        }
    return {
        "kept_up": load.errors == 0 and load.requests >= int(rate * duration_s),
        "rate_achieved": round(load.throughput, 1),
        "commands": load.requests,
        "errors": load.errors,
        "command_p99_ms": load.p99_ms,
    }


@scenario("lag", "Projection lag under a steady open-loop dose load through the API")
def lag(ctx: BenchContext) -> Result:
    rate = 100.0 if ctx.quick else 500.0
    duration = ctx.seconds(20, 10)
    count = int(rate * duration)
    with fx.stack(ctx, pool_size=4) as stack:
        entries = fx.register_entries(int(count * 1.5) + 1000, seed=11)
        citizens = fx.vaccinable(entries, date.today())[:count]
        fx.import_population(stack, entries)
        lots = fx.register_lots(stack, UNITS)
        tokens = fx.staff_tokens(stack, UNITS)
        with fx.read_models(stack, projector=True) as models, stack.api(workers=2) as server:
            models.wait_caught_up()
            app = stack.registry.immunization
            watch = PositionWatch(
                lambda: app.recorder.max_notification_id() or 0,
                lambda: models.reached("immunization"),
            ).start()
            positions = Positions()
            started = time.perf_counter()
            load = offered_load(
                server.url + DOSE_PATH,
                requests(ctx.run_id, citizens, tokens, lots),
                rate=rate,
                duration_s=duration,
                positions=positions,
            )
            models.wait_caught_up()
            samples = watch.stop()
    lags = command_lags(samples, positions.positions)
    recorder = LatencyRecorder()
    recorder.record_many(c.lag_ms for c in lags)
    events_behind = behind(samples)
    p99 = recorder.percentile(99)
    return Result(
        "lag",
        p99 or 0.0,
        "ms (p99 lag)",
        goal=f"p99 <= {GOAL_P99_MS:.0f} ms at {rate:.0f} commands/s",
        met=None if ctx.quick or p99 is None else p99 <= GOAL_P99_MS and load["kept_up"],
        details={
            "rate_target": rate,
            **load,
            "lag_samples": len(lags),
            "sample_interval_ms": SAMPLE_INTERVAL_S * 1000,
            "events_behind_p50": events_behind.percentile(50),
            "events_behind_p99": events_behind.percentile(99),
            "events_behind_max": events_behind.max_ms,
            "timeline": timeline(lags, started, TIMELINE_BUCKET_S),
        },
    ).with_latency(recorder)
