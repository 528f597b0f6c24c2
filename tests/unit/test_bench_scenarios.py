"""The scenario helpers of `bench.scenarios`: sizing, slicing, merging loads, verifying
stored doses, lag from observed positions. No timing is asserted.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import date

import pytest

from bench.loadgen import LoadResult, Response
from bench.results import LatencyRecorder, SeriesPoint
from bench.scenarios import _fixtures as fx
from bench.scenarios import checkpoint, doses, lag, rebuild


def citizen(i: int) -> fx.Citizen:
    return fx.Citizen(f"0791900{i:05d}", f"Nguyễn Văn {i}", date(1990, 1, 1))


def load(latencies: list[float], *, errors: int = 0, duration: float = 2.0) -> LoadResult:
    recorder = LatencyRecorder()
    recorder.record_many(latencies)
    return LoadResult(
        tool="python",
        requests=len(latencies),
        errors=errors,
        duration_s=duration,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        status_counts={201: len(latencies) - errors, 422: errors},
        latency=recorder,
        details={"client_cpu_fraction": 0.1},
    )


def point(concurrency: int, throughput: float, p99: float | None, errors: int = 0) -> SeriesPoint:
    return {
        "concurrency": concurrency,
        "throughput": throughput,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": p99,
        "errors": errors,
    }


def test_database_url_replaces_only_the_database() -> None:
    url = fx.database_url("postgresql://bench:pw@127.0.0.1:5433/postgres?sslmode=disable", "x1")
    assert url == "postgresql://bench:pw@127.0.0.1:5433/x1?sslmode=disable"


def test_vaccinable_keeps_living_adults() -> None:
    entries = fx.register_entries(300, seed=5)
    on = date(2021, 8, 1)
    chosen = fx.vaccinable(entries, on)
    assert 0 < len(chosen) < len(entries)
    by_id = {e.id_number.value: e for e in entries}
    for c in chosen:
        entry = by_id[c.id_number]
        assert entry.deceased_on is None
        assert (on.year - entry.date_of_birth.year) >= fx.ADULT_YEARS


def test_units_and_lots_are_distinct_per_client() -> None:
    assert len({fx.unit(i) for i in range(64)}) == 64
    assert len({fx.lot_number(i) for i in range(64)}) == 64


def test_levels_and_sizing() -> None:
    assert doses.levels(quick=True) == (1, 8)
    assert doses.levels(quick=False) == (1, 4, 16, 64)
    assert doses.citizens_needed(1, 10) == 10_000
    assert doses.citizens_needed(64, 10) == int(doses.SERVER_MAX_RATE * 10)


def test_split_deals_disjoint_slices_covering_everything() -> None:
    people = [citizen(i) for i in range(10)]
    slices = doses.split(people, 3)
    assert [len(s) for s in slices] == [4, 3, 3]
    flat = [c for s in slices for c in s]
    assert sorted(c.id_number for c in flat) == sorted(c.id_number for c in people)


def test_dose_body_is_the_api_shape() -> None:
    body = json.loads(doses.dose_body(citizen(1), "BENCH-0001", "2021-08-02T09:00:00+00:00"))
    assert body == {
        "id_number": "079190000001",
        "full_name": "Nguyễn Văn 1",
        "date_of_birth": "1990-01-01",
        "product": fx.LOT_PRODUCT,
        "lot": "BENCH-0001",
        "given_at": "2021-08-02T09:00:00+00:00",
        "site": "left_arm",
    }


def test_client_requests_carry_an_idempotency_key_per_request() -> None:
    make = doses.client_requests("run", 3, [citizen(1), citizen(2)], "L", "2021-08-02T09:00:00Z")
    first, second = make(0), make(1)
    assert first.path == doses.DOSE_PATH
    assert first.headers["Idempotency-Key"] == "run-3-0"
    assert second.headers["Idempotency-Key"] == "run-3-1"
    assert json.loads(second.body)["id_number"] == citizen(2).id_number


def test_merge_loads_adds_counts_and_merges_latencies() -> None:
    merged = doses.merge_loads([load([1.0] * 99 + [40.0], errors=1), load([2.0] * 100, duration=3)])
    assert merged.requests == 200
    assert merged.errors == 1
    assert merged.duration_s == 3
    assert merged.status_counts == {201: 199, 422: 1}
    assert merged.p50_ms is not None
    assert merged.p50_ms <= 2.0
    assert merged.details["clients"] == 2
    assert merged.throughput == pytest.approx(200 / 3)


def test_best_within_takes_the_highest_concurrency_meeting_the_limit() -> None:
    series = [point(1, 100, 10), point(4, 300, 30), point(16, 500, 80), point(64, 600, 45, 3)]
    best = doses.best_within(series, 50)
    assert best is not None
    assert best["concurrency"] == 4
    assert doses.best_within([point(1, 100, 60)], 50) is None


def test_accepted_collects_dose_ids_and_refusal_codes() -> None:
    accepted = doses.Accepted()
    ok = json.dumps({"position": "immunization:3", "result": {"dose_id": "d1"}}).encode()
    refused = json.dumps({"code": "duplicate_dose", "status": 422}).encode()
    accepted.hook(Response(0, 201, ok, 0, 0, 0))
    accepted.hook(Response(1, 422, refused, 0, 0, 0))
    accepted.hook(Response(2, 502, b"bad gateway", 0, 0, 0))
    assert accepted.dose_ids == ["d1"]
    assert accepted.refusals == Counter({"422 duplicate_dose": 1, "502": 1})


def test_verify_flags_missing_duplicated_and_unanswered_doses() -> None:
    accepted = doses.Accepted(dose_ids=["a", "b", "c"])
    assert doses.verify(accepted, Counter({"a": 1, "b": 1, "c": 1}))["ok"]
    report = doses.verify(accepted, Counter({"a": 1, "b": 2, "x": 1}))
    assert not report["ok"]
    assert (report["missing"], report["stored_twice"], report["stored_without_201"]) == (1, 1, 1)


def samples(*rows: tuple[float, int, int]) -> list[lag.Sample]:
    return [lag.Sample(t, head, reached) for t, head, reached in rows]


def test_first_times_finds_when_a_position_was_first_reached() -> None:
    seen = samples((0.0, 1, 0), (0.1, 5, 2), (0.2, 4, 5), (0.3, 9, 9))
    assert lag.first_times(seen, "head", [1, 3, 5, 9, 10]) == [0.0, 0.1, 0.1, 0.3, math.inf]
    assert lag.first_times(seen, "reached", [2, 5, 6]) == [0.1, 0.2, 0.3]


def test_command_lags_run_from_commit_to_visible() -> None:
    seen = samples((1.0, 3, 0), (1.01, 3, 3), (1.02, 7, 3), (1.05, 7, 7))
    lags = lag.command_lags(seen, [3, 7, 7, 8])
    assert [c.position for c in lags] == [3, 7]
    assert [round(c.lag_ms) for c in lags] == [10, 30]


def test_timeline_keeps_the_worst_lag_per_bucket() -> None:
    lags = [lag.CommandLag(1, 10.0, 5.0), lag.CommandLag(2, 10.1, 9.0), lag.CommandLag(3, 10.3, 1)]
    assert lag.timeline(lags, 10.0, 0.25) == [
        {"t_s": 0.0, "lag_ms": 9.0},
        {"t_s": 0.25, "lag_ms": 1.0},
    ]


def test_events_behind_never_goes_negative() -> None:
    recorder = lag.behind(samples((0, 10, 4), (1, 10, 10), (2, 3, 5)))
    assert recorder.count == 3
    assert recorder.max_ms == 6


def test_position_number_reads_only_the_given_context() -> None:
    assert lag.position_number("immunization:42", "immunization") == 42
    assert lag.position_number("population:42", "immunization") is None
    assert lag.position_number("garbage", "immunization") is None


def test_positions_hook_keeps_the_positions_of_created_answers() -> None:
    positions = lag.Positions()
    positions.hook(Response(0, 201, b'{"position":"immunization:7","result":{}}', 0, 0, 0))
    positions.hook(Response(1, 422, b'{"code":"x"}', 0, 0, 0))
    assert positions.positions == [7]


def test_lag_requests_rotate_tokens_and_lots() -> None:
    make = lag.requests("r", [citizen(i) for i in range(4)], ["t0", "t1"], ["L0", "L1"])
    third = make(2)
    assert third.headers["Authorization"] == "Bearer t0"
    assert json.loads(third.body)["lot"] == "L0"
    assert make(3).headers["Idempotency-Key"] == "r-3"


def test_rebuild_sizes() -> None:
    assert rebuild.sizes(quick=True) == (10_000,)
    assert rebuild.sizes(quick=False) == (10_000, 100_000)


def test_lookup_paths_draw_population_members() -> None:
    people = [citizen(i) for i in range(5)]
    paths = checkpoint.lookup_paths(people, 50, seed=1)
    assert len(paths) == 50
    assert {p.removeprefix("/v1/checkpoint/") for p in paths} <= {c.id_number for c in people}
    assert paths == checkpoint.lookup_paths(people, 50, seed=1)
