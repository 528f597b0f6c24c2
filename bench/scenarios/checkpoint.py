"""`checkpoint`: lookups of random citizens through the running API, beside the bare
ASGI endpoint serving one Redis GET.

The population goes in through the importer and the read models are built from its
events by the real projections (a catch-up in this process) into a namespace of the
run; the API then serves them with 2 workers and wrk drives `GET /v1/checkpoint/{id}`
over 64 connections with a checkpoint officer's token, for living citizens (the
deceased have no checkpoint document). The API is `app_from_environment`, with its
Redis keys under the run's own ``VAXREG_REDIS_NAMESPACE``.
"""

from __future__ import annotations

import random
import urllib.request

from api.http.roles import Role
from bench.harness import BenchContext, scenario
from bench.loadgen import run_http_load
from bench.results import Result
from bench.scenarios import _fixtures as fx

CHECKPOINT = "HN-CP-07"
GOAL_RATIO = 0.75
GOAL_P99_FACTOR = 2.0
PATHS = 20_000


def lookup_paths(citizens: list[fx.Citizen], count: int, seed: int) -> list[str]:
    """`count` lookup paths of citizens drawn at random (with repeats); the deceased have
    no checkpoint document, so callers pass the living."""
    rng = random.Random(seed)
    return [f"/v1/checkpoint/{rng.choice(citizens).id_number}" for _ in range(count)]


def fetch(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status), bytes(response.read())


@scenario("checkpoint", "GET /v1/checkpoint/{id} of random citizens beside ASGI + Redis GET")
def checkpoint(ctx: BenchContext) -> Result:
    ceiling = ctx.ceiling("asgi_redis_get")
    pipelined = ctx.ceiling("asgi_pipelined_get")
    population = ctx.size(100_000, 5_000)
    duration = ctx.seconds(10, 3)
    with fx.stack(ctx, pool_size=2) as stack:
        entries = fx.register_entries(population, seed=23)
        fx.import_population(stack, entries)
        citizens = [
            fx.Citizen(e.id_number.value, e.full_name, e.date_of_birth)
            for e in entries
            if e.deceased_on is None
        ]
        with fx.read_models(stack, projector=False) as models:
            models.runtime.catch_up()
            namespace = models.namespace
        token = stack.issuer.mint(Role.CHECKPOINT_OFFICER, "bench-officer", checkpoint=CHECKPOINT)
        paths = lookup_paths(citizens, min(PATHS, 4 * population), seed=ctx.size(1, 2))
        with ctx.server(
            "api.http.app:app_from_environment",
            factory=True,
            workers=2,
            env={**stack.env, "VAXREG_REDIS_NAMESPACE": namespace},
            ready_path="/healthz",
            ready_timeout_s=60,
        ) as server:
            status, document = fetch(server.url + paths[0], token)
            if status != 200:
                raise RuntimeError(f"a checkpoint lookup answered {status}: {document[:200]!r}")
            headers = {"Authorization": f"Bearer {token}"}
            run_http_load(server.url, duration_s=1, paths=paths, headers=headers)
            load = run_http_load(server.url, duration_s=duration, paths=paths, headers=headers)
    p99_factor = (
        load.p99_ms / ceiling.p99_ms if load.p99_ms is not None and ceiling.p99_ms else None
    )
    result = Result(
        "checkpoint",
        load.throughput,
        "req/s",
        ceiling=ceiling.value,
        ceiling_unit="req/s (raw ASGI + one Redis GET)",
        p50_ms=load.p50_ms,
        p95_ms=load.p95_ms,
        p99_ms=load.p99_ms,
        goal=f">= {GOAL_RATIO} of the ceiling, p99 within {GOAL_P99_FACTOR:g}x of its p99",
        details={
            "p99_factor": p99_factor,
            "ceiling_p99_ms": ceiling.p99_ms,
            "pipelined_ceiling": pipelined.value,
            "pipelined_ratio": load.throughput / pipelined.value if pipelined.value else None,
            "pipelined_ceiling_p99_ms": pipelined.p99_ms,
            "errors": load.errors,
            "population": population,
            "document_bytes": len(document),
            "ceiling_value_bytes": ceiling.details.get("value_bytes"),
            "connections": 64,
            "workers": 2,
            "load": load.summary(),
        },
    )
    if not ctx.quick:
        result.met = (
            load.errors == 0
            and (result.ratio or 0.0) >= GOAL_RATIO
            and p99_factor is not None
            and p99_factor <= GOAL_P99_FACTOR
        )
    return result
