"""No acknowledged write lost: commands under injected faults, then a count of the store.

`run_faults` starts a throwaway PostgreSQL and Redis and the API (two uvicorn workers)
against them, seeds a population, and lets concurrent clients record doses and health
declarations (and read histories) while Redis is restarted empty and PostgreSQL is
restarted cleanly and after a crash. Every command carries an idempotency key and a
marker of its own (the dose's vaccinator, the declaration's vehicle plate); a client
retries on 503, timeouts and refused connections with the same key and body until the
command is answered. The projector runs as a process of its own and is killed with
SIGKILL and restarted. Afterwards the event store is read directly: every acknowledged
command must be there exactly once, with the id it was answered with, and no command
twice; once the projector has caught up, the read models must equal a fresh rebuild
into another namespace, key by key. Every 503 must carry ``Retry-After``; no 500 and no
request left hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from eventsourcing.domain import DomainEvent

from api.http.roles import Role
from api.http.security import TokenIssuer
from application.commands import Request
from bench.servers import Server, start_server
from domain.base import Actor
from infrastructure.bootstrap import Registry, bootstrap, migrate
from infrastructure.population.generator import generate_register
from infrastructure.population.rows import RegisterEntry, RowRejected, parse_row
from infrastructure.settings import load_settings
from projections.engine import positions
from projections.runtime import ProjectionRuntime
from reliability import APP_FACTORY
from reliability.servers import ThrowawayPostgres, ThrowawayRedis

SECRET_KEY = "fault1:reliability-run-secret-0123456789"
ID_KEY = "reliability-run-id-key-0123456789"
UNIT = "79-HCM-001"
CHECKPOINT = "HN-CP-07"
CLIENT_TIMEOUT_SECONDS = 15.0
RESOLVE_GRACE_SECONDS = 90.0
CATCH_UP_SECONDS = 120.0
POOL_SIZE = 2
"""Per Application and process: with the default 5 (and 10 overflow), the two workers'
four contexts and the projector can ask for more than PostgreSQL's 100 connections."""
MAX_RETRY_SLEEP_SECONDS = 1.0
SEEDER = Request(Actor("fault-seeder", "admin"))
READS = frozenset({"history", "lookup"})


@dataclass
class Stack:
    """Throwaway PostgreSQL and Redis, and the API served against them."""

    directory: Path
    workers: int = 2
    encryption_key: str | None = None
    postgres: Any = None
    redis: Any = None
    api: Server | None = None
    projector: subprocess.Popen[bytes] | None = None
    database_url: str = ""

    @property
    def env(self) -> dict[str, str]:
        env = {
            "VAXREG_DATABASE_URL": self.database_url,
            "VAXREG_REDIS_URL": self.redis.url,
            "VAXREG_SECRET_KEY": SECRET_KEY,
            "VAXREG_ID_KEY": ID_KEY,
            "VAXREG_DATA_DIR": str(self.directory / "var"),
            "VAXREG_POSTGRES_POOL_SIZE": str(POOL_SIZE),
        }
        if self.encryption_key:
            env["VAXREG_ENCRYPTION_KEY"] = self.encryption_key
        return env

    def start(self) -> None:
        self.postgres = ThrowawayPostgres()
        self.postgres.start()
        self.redis = ThrowawayRedis()
        self.redis.start()
        self.database_url = self.postgres.create_database("vaxreg")
        settings = load_settings(self.env)
        migrate(settings)
        self.start_projector()
        self.start_api()

    def start_projector(self) -> None:
        with (self.directory / "projector.log").open("ab") as log:
            self.projector = subprocess.Popen(
                [sys.executable, "-c", "import reliability; reliability.run_projector()"],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_projector(self) -> None:
        if self.projector is not None:
            self.projector.send_signal(signal.SIGKILL)
            self.projector.wait()
            self.projector = None

    def stop_projector(self) -> None:
        if self.projector is not None:
            self.projector.terminate()
            try:
                self.projector.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_projector()
            self.projector = None

    def start_api(self) -> None:
        self.api = start_server(
            APP_FACTORY,
            factory=True,
            workers=self.workers,
            env=self.env,
            ready_path="/healthz",
            log_path=self.directory / "api.log",
        )

    def registry(self) -> Registry:
        return bootstrap(load_settings(self.env))

    def issuer(self) -> TokenIssuer:
        return TokenIssuer(load_settings(self.env).secret_keys)

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
        self.stop_projector()
        for server in (self.redis, self.postgres):
            if server is not None:
                server.close()


@contextlib.contextmanager
def running_stack(directory: Path, **options: Any) -> Iterator[Stack]:
    stack = Stack(directory, **options)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def seed(stack: Stack, citizens: int, seed_value: int = 7) -> list[RegisterEntry]:
    """Register `citizens` synthetic people and the lot the doses use."""
    registry = stack.registry()
    entries: list[RegisterEntry] = []
    try:
        for line, row in enumerate(generate_register(citizens, seed=seed_value), start=1):
            try:
                entry = parse_row(row, line)
            except RowRejected:
                continue
            details = entry.details()
            registry.population.register_citizen(SEEDER, details)
            entries.append(entry)
        registry.immunization.register_lot(
            SEEDER, "comirnaty", "PF-FAULT", datetime(2035, 1, 1).date()
        )
    finally:
        registry.close()
    return entries


@dataclass(frozen=True)
class Command:
    kind: str
    marker: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Attempt:
    at: float
    latency: float
    status: int | str
    retry_after: str | None = None
    detail: str = ""


@dataclass
class Resolution:
    command: Command
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    answer: dict[str, Any] | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Workload:
    """Builds commands and reads: doses by medical staff, declarations and checkpoint
    lookups by officers, history reads by auditors (fractions `lookups` and `reads`)."""

    def __init__(
        self,
        stack: Stack,
        people: list[RegisterEntry],
        reads: float = 0.05,
        lookups: float = 0.1,
    ) -> None:
        issuer = stack.issuer()
        self.people = people
        self.reads = reads
        self.lookups = lookups
        self.staff = _bearer(issuer.mint(Role.MEDICAL_STAFF, "staff-load", unit=UNIT))
        self.officer = _bearer(
            issuer.mint(Role.CHECKPOINT_OFFICER, "officer-load", checkpoint=CHECKPOINT)
        )
        self.auditor = _bearer(issuer.mint(Role.AUDITOR, "auditor-load"))
        self.run_id = uuid.uuid4().hex[:6]
        self.count = 0

    def next(self, rng: random.Random) -> Command:
        self.count += 1
        marker = f"L{self.run_id}{self.count}"
        person = rng.choice(self.people)
        roll = rng.random()
        if roll < self.lookups:
            path = f"/v1/checkpoint/{person.id_number}"
            return Command("lookup", marker, path, {}, self.officer)
        if roll < self.lookups + self.reads:
            path = f"/v1/citizens/{person.id_number}/history"
            return Command("history", marker, path, {}, self.auditor)
        key = {"Idempotency-Key": marker}
        if roll < self.lookups + self.reads + (1 - self.lookups - self.reads) / 2:
            given = datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 600_000))
            body = {
                "id_number": str(person.id_number),
                "full_name": person.full_name,
                "date_of_birth": person.date_of_birth.isoformat(),
                "product": "comirnaty",
                "lot": "PF-FAULT",
                "given_at": given.isoformat(),
                "site": "left_arm",
                "vaccinator": marker,
                "override_reason": "fault-injection load",
            }
            return Command("dose", marker, "/v1/vaccinations/doses", body, self.staff | key)
        trip = {
            "origin": "079",
            "destination": "001",
            "travel_date": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
            "transport": "car",
            "vehicle_plate": marker,
        }
        declared: dict[str, Any] = {"id_number": str(person.id_number), "trip": trip}
        return Command("declaration", marker, "/v1/declarations", declared, self.officer | key)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def resolve(
    client: httpx.AsyncClient, command: Command, give_up_at: float, started: float
) -> Resolution:
    """Send until answered (2xx or 4xx), retrying 503s, timeouts and connection errors."""
    resolution = Resolution(command)
    while time.monotonic() < give_up_at:
        sent = time.monotonic()
        try:
            if command.kind in READS:
                response = await client.get(command.path, headers=command.headers)
            else:
                response = await client.post(
                    command.path, json=command.body, headers=command.headers
                )
        except httpx.TimeoutException:
            resolution.attempts.append(Attempt(sent - started, time.monotonic() - sent, "timeout"))
            continue
        except httpx.TransportError:
            resolution.attempts.append(Attempt(sent - started, time.monotonic() - sent, "refused"))
            await asyncio.sleep(0.2)
            continue
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        detail = response.text[:200] if status >= 500 else ""
        resolution.attempts.append(
            Attempt(sent - started, time.monotonic() - sent, status, retry_after, detail)
        )
        if status == 503:
            wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
            await asyncio.sleep(min(wait, MAX_RETRY_SLEEP_SECONDS) * random.uniform(0.5, 1.0))
            continue
        resolution.status = status
        if 200 <= status < 300 and command.kind not in READS:
            resolution.answer = response.json()["result"]
        return resolution
    return resolution


@dataclass(frozen=True)
class Injection:
    name: str
    down_at: float
    up_at: float


Fault = tuple[str, Callable[[], None], Callable[[], None]]


def faults_of(stack: Stack) -> list[Fault]:
    """Each fault as (name, take down, bring back)."""
    return [
        ("projector killed (SIGKILL) and restarted", stack.kill_projector, stack.start_projector),
        ("redis restarted empty", stack.redis.stop, stack.redis.start),
        ("postgresql restarted (fast shutdown)", stack.postgres.stop, stack.postgres.start),
        ("postgresql crashed (immediate) and restarted", stack.postgres.kill, stack.postgres.start),
    ]


async def inject(
    faults: list[Fault], seconds: float, down_seconds: float, started: float
) -> list[Injection]:
    done: list[Injection] = []
    for index, (name, down, up) in enumerate(faults):
        at = seconds * (index + 1) / (len(faults) + 1)
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        down_at = time.monotonic() - started
        await asyncio.to_thread(down)
        await asyncio.sleep(down_seconds)
        await asyncio.to_thread(up)
        done.append(Injection(name, down_at, time.monotonic() - started))
    return done


async def drive(
    stack: Stack, workload: Workload, clients: int, seconds: float, faults: list[Fault], down: float
) -> tuple[list[Resolution], list[Injection], float]:
    assert stack.api is not None
    started = time.monotonic()
    deadline = started + seconds
    give_up_at = deadline + RESOLVE_GRACE_SECONDS
    resolutions: list[Resolution] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=stack.api.url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as client:

        async def one_client(number: int) -> None:
            rng = random.Random(number)
            while time.monotonic() < deadline:
                resolutions.append(await resolve(client, workload.next(rng), give_up_at, started))

        injector = asyncio.create_task(inject(faults, seconds, down, started))
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        injections = await injector
    return resolutions, injections, time.monotonic() - started


@dataclass
class Found:
    doses: Counter[str]
    dose_ids: dict[str, str]
    declarations: Counter[str]
    declaration_ids: dict[str, str]
    history_reads_logged: int


def _events(registry: Registry, context: str, suffix: str) -> Iterator[DomainEvent]:
    app = registry.apps[context]
    start = 1
    while True:
        page = app.recorder.select_notifications(start, 1000)
        if not page:
            return
        for notification in page:
            if notification.topic.endswith(suffix):
                yield cast(DomainEvent, app.mapper.to_domain_event(notification))
        start = page[-1].id + 1


def count_store(stack: Stack) -> Found:
    """Doses and declarations in the event store, by marker, with their ids."""
    registry = stack.registry()
    try:
        doses: Counter[str] = Counter()
        dose_ids: dict[str, str] = {}
        for event in _events(registry, "immunization", ":VaccinationRecord.DoseAdministered"):
            dose = event.dose  # type: ignore[attr-defined]
            doses[dose.vaccinator] += 1
            dose_ids[dose.vaccinator] = str(dose.dose_id)
        declarations: Counter[str] = Counter()
        declaration_ids: dict[str, str] = {}
        for event in _events(registry, "mobility", ":MobilityRecord.HealthDeclared"):
            declaration = event.declaration  # type: ignore[attr-defined]
            plate = declaration.trip.vehicle_plate or ""
            declarations[plate] += 1
            declaration_ids[plate] = str(declaration.declaration_id)
        logged = len(registry.access_log.reads_by("auditor-load", limit=10_000_000))
    finally:
        registry.close()
    return Found(doses, dose_ids, declarations, declaration_ids, logged)


@dataclass
class ModelCheck:
    caught_up_seconds: float | None
    keys: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def _without_zero_counters(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Hash fields at 0 dropped: counters may rest at 0, and readers treat 0 as absent."""
    return {
        key: {f: v for f, v in value.items() if v != b"0"} if isinstance(value, dict) else value
        for key, value in snapshot.items()
    }


def compare_read_models(stack: Stack) -> ModelCheck:
    """Wait for the projector to reach the store's heads, then compare every read model
    with a rebuild from the event store into a fresh namespace, key by key (and field by
    field: counters at 0 count as absent)."""
    registry = stack.registry()
    try:
        live = ProjectionRuntime.from_registry(registry)
        heads = registry.heads()
        started = time.monotonic()
        caught_up: float | None = None
        while time.monotonic() - started < CATCH_UP_SECONDS:
            reached = [positions(live.store, p) for p in live.projections]
            if all(
                r is not None and all(r.get(c, 0) >= heads[c] for c in p.contexts)
                for r, p in zip(reached, live.projections, strict=True)
            ):
                caught_up = time.monotonic() - started
                break
            time.sleep(0.5)
        if caught_up is None:
            return ModelCheck(None)
        fresh = ProjectionRuntime.from_registry(registry, f"verify{uuid.uuid4().hex[:8]}")
        fresh.rebuild()
        check = ModelCheck(caught_up)
        for projection in live.projections:
            ours = _without_zero_counters(live.store.snapshot(projection.name))
            theirs = _without_zero_counters(fresh.store.snapshot(projection.name))
            check.keys += len(theirs)
            check.missing += sorted(set(theirs) - set(ours))
            check.extra += sorted(set(ours) - set(theirs))
            different = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
            check.different += different
            check.details += [
                f"{k}: live {ours[k]!r:.300} rebuilt {theirs[k]!r:.300}" for k in different[:3]
            ]
        return check
    finally:
        registry.close()


def _times(attempts: list[Attempt]) -> str:
    """When the first and last of `attempts` were answered, in seconds into the run."""
    answered = sorted(a.at + a.latency for a in attempts)
    return f"{answered[0]:.1f}s-{answered[-1]:.1f}s"


@dataclass
class FaultReport:
    seconds: float
    clients: int
    injections: list[Injection]
    resolutions: list[Resolution]
    found: Found
    models: ModelCheck
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> None:
        attempts = [a for r in self.resolutions for a in r.attempts]
        statuses = Counter(str(a.status) for a in attempts)
        by_kind = Counter(r.command.kind for r in self.resolutions)
        acked = Counter(r.command.kind for r in self.resolutions if r.acknowledged)
        unresolved = [r for r in self.resolutions if r.status is None]
        lost: list[str] = []
        wrong_id: list[str] = []
        for r in self.resolutions:
            if not r.acknowledged or r.command.kind in READS or r.answer is None:
                continue
            counts, ids, key = (
                (self.found.doses, self.found.dose_ids, "dose_id")
                if r.command.kind == "dose"
                else (self.found.declarations, self.found.declaration_ids, "declaration_id")
            )
            if counts[r.command.marker] == 0:
                lost.append(r.command.marker)
            elif ids[r.command.marker] != r.answer[key]:
                wrong_id.append(r.command.marker)
        ours = {r.command.marker for r in self.resolutions}
        twice = [
            m
            for counter in (self.found.doses, self.found.declarations)
            for m, n in counter.items()
            if n > 1 and m in ours
        ]
        no_retry_after = sum(1 for a in attempts if a.status == 503 and not a.retry_after)
        hangs = statuses["timeout"]
        served = [a for a in attempts if isinstance(a.status, int)]
        max_latency = max((a.latency for a in served), default=0.0)
        outage_503 = sum(
            1 for a in attempts if a.status == 503 and self._in_outage(a.at + a.latency)
        )
        replayed_or_retried = sum(1 for r in self.resolutions if len(r.attempts) > 1)
        histories = [r for r in self.resolutions if r.command.kind == "history" and r.acknowledged]

        self.lines += [
            f"load: {self.clients} clients for {self.seconds:.0f} s, "
            f"{sum(by_kind.values())} commands and reads ({dict(by_kind)}), "
            f"{len(attempts)} requests",
            "injected:",
            *(f"  {i.down_at:6.1f}s - {i.up_at:6.1f}s  {i.name}" for i in self.injections),
            f"statuses of all requests: {dict(sorted(statuses.items()))}",
            f"503s during or within 15 s after an outage: {outage_503} of {statuses['503']}; "
            f"503 without Retry-After: {no_retry_after}",
            f"max latency of an answered request: {max_latency:.2f} s; "
            f"client timeouts ({CLIENT_TIMEOUT_SECONDS:.0f} s): {hangs}",
            f"acknowledged: {dict(acked)}; retried at least once: {replayed_or_retried}; "
            f"never answered: {len(unresolved)}",
            f"found in the event store: doses {sum(self.found.doses[m] for m in ours)}, "
            f"declarations {sum(self.found.declarations[m] for m in ours)}; "
            f"acknowledged but missing: {len(lost)}; with another id: {len(wrong_id)}; "
            f"recorded twice: {len(twice)}",
            f"history reads answered: {len(histories)}, in the access log: "
            f"{self.found.history_reads_logged}",
        ]
        models = self.models
        if models.caught_up_seconds is None:
            self.lines.append(
                f"read models: the projector did not catch up in {CATCH_UP_SECONDS} s"
            )
            self.problems.append("the projector did not catch up")
        else:
            self.lines.append(
                f"read models: caught up {models.caught_up_seconds:.1f} s after the load; "
                f"{models.keys} keys of a fresh rebuild compared: {len(models.missing)} missing, "
                f"{len(models.extra)} extra, {len(models.different)} different"
            )
            for name, keys in (
                ("missing", models.missing),
                ("extra", models.extra),
                ("different", models.different),
            ):
                if keys:
                    self.problems.append(f"read model keys {name}: {keys[:5]}")
            self.problems += models.details
        if lost:
            self.problems.append(f"acknowledged commands missing from the store: {lost[:10]}")
        if wrong_id:
            self.problems.append(f"stored under another id than acknowledged: {wrong_id[:10]}")
        if twice:
            self.problems.append(f"commands recorded more than once: {twice[:10]}")
        if statuses["500"]:
            self.problems.append(f"{statuses['500']} responses were 500")
        if no_retry_after:
            self.problems.append(f"{no_retry_after} 503 responses had no Retry-After")
        if hangs:
            self.problems.append(
                f"{hangs} requests got no answer within {CLIENT_TIMEOUT_SECONDS} s"
            )
        if unresolved:
            self.problems.append(f"{len(unresolved)} commands were never answered")
        stray = [a for a in attempts if a.status == 503 and not self._in_outage(a.at + a.latency)]
        if stray:
            self.problems.append(
                f"{len(stray)} 503s outside any outage, at {_times(stray)}: {stray[0].detail}"
            )
        if self.found.history_reads_logged < len(histories):
            self.problems.append("answered history reads missing from the access log")
        missing_views = [
            a
            for r in self.resolutions
            if r.command.kind == "lookup"
            for a in r.attempts
            if a.status == 404
        ]
        if missing_views:
            self.problems.append(
                f"{len(missing_views)} checkpoint lookups of registered citizens answered 404, "
                f"at {_times(missing_views)} (read models lost or not yet rebuilt)"
            )
        unexpected = Counter(
            str(a.status)
            for r in self.resolutions
            for a in r.attempts
            if str(a.status) not in {"200", "201", "503", "timeout", "refused"}
            and not (r.command.kind == "lookup" and a.status == 404)
        )
        if unexpected:
            self.problems.append(f"unexpected statuses: {dict(unexpected)}")

    def _in_outage(self, at: float) -> bool:
        return any(i.down_at <= at <= i.up_at + 15 for i in self.injections)

    def summary(self) -> str:
        verdict = "OK: nothing acknowledged was lost" if self.ok else "FAILED"
        return "\n".join([*self.lines, verdict, *(f"  - {p}" for p in self.problems)])


def run_faults(
    directory: Path,
    *,
    seconds: float = 60.0,
    clients: int = 16,
    citizens: int = 300,
    down_seconds: float = 3.0,
    workers: int = 2,
    out: Callable[[str], None] = print,
) -> FaultReport:
    with running_stack(directory, workers=workers) as stack:
        api = stack.api.url if stack.api else "-"
        out(f"servers: postgresql :{stack.postgres.port}, redis :{stack.redis.port}, api {api}")
        people = seed(stack, citizens)
        out(f"seeded {len(people)} citizens; running {seconds:.0f} s with {clients} clients")
        workload = Workload(stack, people)
        resolutions, injections, _ = asyncio.run(
            drive(stack, workload, clients, seconds, faults_of(stack), down_seconds)
        )
        found = count_store(stack)
        models = compare_read_models(stack)
    report = FaultReport(seconds, clients, injections, resolutions, found, models)
    report.check()
    out(report.summary())
    return report
