"""The benchmark harness: percentiles, wrk parsing, result shape, the Python load
generator against an in-process ASGI server, the registry and the CLI.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from bench import harness, loadgen
from bench.harness import BenchContext, scenario
from bench.loadgen import (
    LoadResult,
    Request,
    Response,
    closed_loop,
    fixed_request,
    open_loop,
    parse_wrk_output,
    random_paths,
    run_http_load,
    run_wrk,
    wrk_available,
    wrk_script,
)
from bench.report import splice
from bench.results import LatencyRecorder, Result, exact_percentile, format_result, read_results
from bench.servers import free_port

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/postgres"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


# --- percentiles ---------------------------------------------------------------------


def test_exact_percentile_is_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert exact_percentile(samples, 50) == 50.0
    assert exact_percentile(samples, 95) == 95.0
    assert exact_percentile(samples, 99) == 99.0
    assert exact_percentile(samples, 99.5) == 100.0
    assert exact_percentile(samples, 0) == 1.0
    assert exact_percentile(samples, 100) == 100.0
    assert exact_percentile([7.0], 99) == 7.0


def test_exact_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no samples"):
        exact_percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        exact_percentile([1.0], 101)


def test_recorder_is_exact_while_small() -> None:
    rng = random.Random(1)
    samples = [rng.lognormvariate(0, 1) for _ in range(1000)]
    recorder = LatencyRecorder()
    recorder.record_many(samples)
    assert recorder.exact
    for p in (50, 95, 99, 99.9):
        assert recorder.percentile(p) == exact_percentile(sorted(samples), p)


@pytest.mark.parametrize("precision", [0.01, 0.05])
def test_histogram_percentiles_are_within_precision(precision: float) -> None:
    rng = random.Random(2)
    samples = [rng.lognormvariate(0.5, 1.2) for _ in range(20_000)]
    recorder = LatencyRecorder(precision=precision, exact_limit=100)
    recorder.record_many(samples)
    assert not recorder.exact
    ordered = sorted(samples)
    for p in (1, 50, 90, 95, 99, 99.9):
        got = recorder.percentile(p)
        assert got is not None
        assert math.isclose(got, exact_percentile(ordered, p), rel_tol=precision)
    assert recorder.percentile(100) == pytest.approx(max(samples), rel=precision)
    assert recorder.count == len(samples)


def test_recorder_merge_and_empty() -> None:
    assert LatencyRecorder().percentile(50) is None
    assert LatencyRecorder().summary() == {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    a, b = LatencyRecorder(), LatencyRecorder()
    a.record_many([1.0, 2.0])
    b.record_many([3.0, 4.0])
    a.merge(b)
    assert a.count == 4
    assert a.percentile(50) == 2.0
    assert a.percentile(100) == 4.0
    with pytest.raises(ValueError, match="bucketing"):
        a.merge(LatencyRecorder(precision=0.1))


# --- wrk -------------------------------------------------------------------------------

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:41593/v1/checkpoint/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.71ms    3.10ms  28.90ms   80.00%
    Req/Sec     6.07k   512.00     7.10k    70.00%
  36201 requests in 3.00s, 17.02MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  12067.00
Transfer/sec:      5.67MB
VAXREG_WRK requests=36201 duration_us=3000000 bytes=17846093 \
connect=0 read=1 write=0 status=3 timeout=0
VAXREG_WRK_LATENCY p=50 us=4710
VAXREG_WRK_LATENCY p=90 us=9020
VAXREG_WRK_LATENCY p=95 us=12600
VAXREG_WRK_LATENCY p=99 us=28900
VAXREG_WRK_LATENCY p=99.9 us=40100
VAXREG_WRK_LATENCY_STATS min_us=210 max_us=52000 mean_us=5120.5
"""


def test_parse_wrk_output() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.tool == "wrk"
    assert result.requests == 36201
    assert result.duration_s == 3.0
    assert result.throughput == pytest.approx(12067.0)
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (4.71, 12.6, 28.9)
    assert result.errors == 4
    assert result.details["errors_by_kind"]["status"] == 3
    assert result.details["p99_9_ms"] == pytest.approx(40.1)
    assert result.details["max_ms"] == 52.0


def test_parse_wrk_output_without_summary_fails() -> None:
    with pytest.raises(ValueError, match="no wrk summary"):
        parse_wrk_output("Requests/sec:  12067.00\n")


def test_wrk_script_with_paths_and_headers() -> None:
    script = wrk_script(
        paths_file="/tmp/paths.txt", headers={"Authorization": 'Bearer a"b'}, method="GET"
    )
    assert 'io.lines("/tmp/paths.txt")' in script
    assert '["Authorization"] = "Bearer a\\034b"' in script
    assert "function request()" in script
    assert "function done(summary, latency, requests)" in script
    assert "latency:percentile(p)" in script


def test_wrk_script_fixed_request_has_no_request_function() -> None:
    script = wrk_script(method="POST", body='{"a":1}\n')
    assert "function request()" not in script
    assert "wrk.method = method" in script
    assert '"{\\034a\\034:1}\\010"' in script


# --- results ---------------------------------------------------------------------------

RESULT_FIELDS = {
    "scenario",
    "value",
    "unit",
    "ceiling",
    "ceiling_unit",
    "ratio",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "goal",
    "met",
    "machine",
    "started_at",
    "details",
}


def test_result_json_shape_and_round_trip(tmp_path: Path) -> None:
    recorder = LatencyRecorder()
    recorder.record_many([1.0, 2.0, 3.0, 4.0])
    result = Result(
        "checkpoint",
        6000.0,
        "req/s",
        ceiling=12000.0,
        ceiling_unit="req/s",
        goal=">= 0.5 of the ceiling",
        met=True,
        machine={"cores": 2},
        details={"series": [{"concurrency": 8, "throughput": 6000.0}]},
    ).with_latency(recorder)
    data = json.loads(result.to_json())
    assert set(data) == RESULT_FIELDS
    assert data["ratio"] == 0.5
    assert (data["p50_ms"], data["p99_ms"]) == (2.0, 4.0)
    assert data["met"] is True
    path = tmp_path / "r.jsonl"
    path.write_text(result.to_json() + "\n\n" + Result("x", 1, "u").to_json() + "\n")
    back = read_results(str(path))
    assert back[0] == result
    assert back[1].ratio is None
    assert back[1].met is None
    assert "ratio 0.50" in format_result(result)


def test_splice_replaces_marked_section_only() -> None:
    first = splice(
        "# Performance\n\nintro\n", "<!-- bench:results:begin -->\nA\n<!-- bench:results:end -->\n"
    )
    second = splice(
        first + "\noutro\n", "<!-- bench:results:begin -->\nB\n<!-- bench:results:end -->\n"
    )
    assert "intro" in second
    assert "outro" in second
    assert "B" in second
    assert "\nA\n" not in second


# --- the Python load generator ---------------------------------------------------------


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 echoing the body on POST, a chunked body on /chunked, 404 on /missing."""
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})
        return
    status = 404 if scope["path"] == "/missing" else 200
    payload = body or scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def with_server(run: Any) -> Any:
    port = free_port()
    config = uvicorn.Config(
        tiny_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        return await run(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def test_closed_loop_is_bounded_by_count_and_echoes_bodies() -> None:
    seen: list[Response] = []

    async def run(url: str) -> LoadResult:
        return await closed_loop(
            url,
            lambda i: Request("POST", "/dose", f'{{"n":{i}}}'.encode()),
            concurrency=4,
            duration_s=10,
            max_requests=200,
            on_response=seen.append,
        )

    result = asyncio.run(with_server(run))
    assert result.requests == 200
    assert result.errors == 0
    assert result.status_counts == {200: 200}
    assert result.p50_ms is not None
    assert result.p99_ms is not None
    assert result.p50_ms <= result.p99_ms
    assert sorted(r.index for r in seen) == list(range(200))
    assert all(r.body == f'{{"n":{r.index}}}'.encode() for r in seen)


def test_closed_loop_is_bounded_by_duration_and_counts_errors() -> None:
    async def run(url: str) -> LoadResult:
        return await closed_loop(
            url, fixed_request(Request("GET", "/missing")), concurrency=2, duration_s=0.2
        )

    result = asyncio.run(with_server(run))
    assert result.requests > 0
    assert result.errors == result.requests
    assert result.duration_s < 5


def test_chunked_responses_and_random_paths() -> None:
    bodies: list[bytes] = []

    async def run(url: str) -> tuple[LoadResult, LoadResult]:
        chunked = await closed_loop(
            url,
            fixed_request(Request("GET", "/chunked")),
            concurrency=1,
            duration_s=5,
            max_requests=3,
            on_response=lambda r: bodies.append(r.body),
        )
        paths = await closed_loop(
            url,
            random_paths(["/a", "/b"], seed=3),
            concurrency=2,
            duration_s=5,
            max_requests=50,
            on_response=lambda r: bodies.append(r.body),
        )
        return chunked, paths

    chunked, paths = asyncio.run(with_server(run))
    assert chunked.requests == 3
    assert bodies[:3] == [b"abcd"] * 3
    assert paths.requests == 50
    assert set(bodies[3:]) == {b"/a", b"/b"}


def test_open_loop_sends_the_scheduled_count() -> None:
    async def run(url: str) -> LoadResult:
        return await open_loop(
            url, fixed_request(Request("GET", "/x")), rate=500, duration_s=0.2, max_in_flight=8
        )

    result = asyncio.run(with_server(run))
    assert result.details["scheduled"] == 100
    assert result.requests == 100
    assert result.errors == 0


@pytest.fixture
def threaded_server() -> Iterator[str]:
    """The tiny app served by uvicorn in a background thread, for synchronous drivers."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(tiny_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")
def test_run_wrk_against_a_server(threaded_server: str) -> None:
    result = run_wrk(
        threaded_server + "/x",
        duration_s=1,
        connections=4,
        threads=1,
        paths=["/a", "/b", "/missing"],
        headers={"Authorization": "Bearer t"},
    )
    assert result.requests > 0
    assert 0 < result.errors < result.requests
    assert result.p50_ms is not None


def test_http_load_falls_back_to_python_without_wrk(
    threaded_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loadgen, "wrk_available", lambda: False)
    warnings: list[str] = []
    result = run_http_load(
        threaded_server + "/a", duration_s=0.3, connections=2, paths=["/a"], warn=warnings.append
    )
    assert result.tool == "python"
    assert result.requests > 0
    assert result.errors == 0
    assert warnings


def test_load_targets_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(
            closed_loop(
                "http://192.0.2.1/", fixed_request(Request("GET", "/")), concurrency=1, duration_s=1
            )
        )


# --- registry and runner ---------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, harness.Scenario]:
    harness.load_scenarios()
    scenarios = dict(harness.SCENARIOS)
    monkeypatch.setattr(harness, "SCENARIOS", scenarios)
    return scenarios


def test_registry_registers_and_resolves(registry: dict[str, harness.Scenario]) -> None:
    @scenario("fake", "a fake scenario")
    def fake(ctx: BenchContext) -> Result:
        return Result("fake", 1.0, "ops/s")

    assert registry["fake"].description == "a fake scenario"
    assert [s.name for s in harness.resolve(["fake"])] == ["fake"]
    names = [s.name for s in harness.resolve(["all"])]
    assert names[0] == "ceilings"
    assert "fake" in names
    with pytest.raises(KeyError, match="unknown scenario"):
        harness.resolve(["nope"])
    with pytest.raises(ValueError, match="twice"):
        scenario("fake")(lambda ctx: None)
    with pytest.raises(ValueError, match="not a scenario name"):
        scenario("all")(lambda ctx: None)


def test_run_records_emits_and_reports_failures(
    registry: dict[str, harness.Scenario], tmp_path: Path
) -> None:
    @scenario("fake_ok")
    def fake_ok(ctx: BenchContext) -> list[Result]:
        early = ctx.record(Result("fake_ok.early", ctx.size(100, 1), "rows"))
        return [early, Result("fake_ok", ctx.seconds(10, 1), "s")]

    @scenario("fake_broken")
    def fake_broken(ctx: BenchContext) -> None:
        raise RuntimeError("boom")

    out = io.StringIO()
    output = tmp_path / "results.jsonl"
    results, failed = harness.run(
        ["fake_ok", "fake_broken"],
        quick=True,
        json=True,
        output=output,
        stdout=out,
        log_stream=io.StringIO(),
        postgres_url=UNREACHABLE_POSTGRES,
        redis_url=UNREACHABLE_REDIS,
    )
    assert failed == ["fake_broken"]
    assert [(r.scenario, r.value) for r in results] == [("fake_ok.early", 1), ("fake_ok", 1)]
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [p["scenario"] for p in printed] == ["fake_ok.early", "fake_ok"]
    assert printed[0]["machine"]["cores"] is not None
    assert [r.scenario for r in read_results(str(output))] == ["fake_ok.early", "fake_ok"]


def test_run_reports_modules_that_failed_to_import(
    registry: dict[str, harness.Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    @scenario("fake_fine")
    def fake_fine(ctx: BenchContext) -> Result:
        return Result("fake_fine", 1.0, "ops/s")

    monkeypatch.setattr(harness, "IMPORT_ERRORS", {"bench.scenarios.broken": "Traceback"})
    results, failed = harness.run(
        ["fake_fine"],
        stdout=io.StringIO(),
        log_stream=io.StringIO(),
        postgres_url=UNREACHABLE_POSTGRES,
        redis_url=UNREACHABLE_REDIS,
    )
    assert [r.scenario for r in results] == ["fake_fine"]
    assert failed == ["import bench.scenarios.broken"]


def test_cli_runs_a_scenario(
    registry: dict[str, harness.Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli.bench import bench_app

    @scenario("fake_cli", "for the CLI")
    def fake_cli(ctx: BenchContext) -> Result:
        return Result("fake_cli", 2.0 if ctx.quick else 1.0, "ops/s")

    monkeypatch.setenv("VAXREG_BENCH_POSTGRES_URL", UNREACHABLE_POSTGRES)
    monkeypatch.setenv("VAXREG_BENCH_REDIS_URL", UNREACHABLE_REDIS)
    runner = CliRunner()
    listed = runner.invoke(bench_app, ["list"])
    assert "fake_cli" in listed.output
    ran = runner.invoke(bench_app, ["fake_cli", "--json", "--quick"])
    assert ran.exit_code == 0, ran.output
    line = next(line for line in ran.output.splitlines() if line.startswith("{"))
    assert json.loads(line)["value"] == 2.0
    assert runner.invoke(bench_app, ["no_such_scenario"]).exit_code != 0
