"""Shared setup of the API scenarios: a scratch registry database, its population, lots,
tokens and the API server running on it.

A `Stack` is one fresh PostgreSQL database with the three contexts' tables, the settings
the API reads from its environment, and an in-process `Registry` on the same database
for setup and for checking what a run stored. Citizens are loaded through the
population importer (the bulk path), from the synthetic register generator.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from api.http.roles import Role
from api.http.security import TokenIssuer
from application.commands import Request
from bench.harness import BenchContext
from bench.servers import Server

if TYPE_CHECKING:
    from projections.runtime import ProjectionRuntime
from domain.base import Actor
from domain.dose_rules import DoseContext
from domain.doses import Dose, DoseKind, InjectionSite
from domain.identity import parse_person_id
from domain.vaccination import VaccinationRecord
from domain.vaccines import CATALOGUE
from infrastructure.bootstrap import Registry, bootstrap, migrate
from infrastructure.population.generator import generate_register
from infrastructure.population.importer import PopulationImport
from infrastructure.population.rows import RegisterEntry, RowRejected, parse_row, write_ndjson
from infrastructure.settings import Settings, load_settings

API_FACTORY = "api.http.app:app_from_environment"
UNIT_PREFIX = "79-BENCH-"
LOT_PRODUCT = "comirnaty"
LOT_EXPIRES = date(2030, 12, 31)
SETUP_ACTOR = Actor("bench-setup", "admin")
ADULT_YEARS = 18


@dataclass(frozen=True)
class Citizen:
    """What a medical unit captures about a citizen at the site."""

    id_number: str
    full_name: str
    date_of_birth: date


def database_url(server_url: str, dbname: str) -> str:
    """`server_url` (postgresql://...) pointing at database `dbname`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def settings_env(ctx: BenchContext, dbname: str, *, pool_size: int = 10) -> dict[str, str]:
    """The `VAXREG_*` environment of the API and of the in-process registry."""
    return {
        "VAXREG_DATABASE_URL": database_url(ctx.postgres_url, dbname),
        "VAXREG_REDIS_URL": ctx.redis_url,
        "VAXREG_SECRET_KEY": f"bench:{secrets.token_urlsafe(24)}",
        "VAXREG_ID_KEY": secrets.token_urlsafe(24),
        "VAXREG_DATA_DIR": str(ctx.output_dir / "data"),
        "VAXREG_POSTGRES_POOL_SIZE": str(pool_size),
    }


@dataclass
class Stack:
    ctx: BenchContext
    dbname: str
    env: dict[str, str]
    settings: Settings
    registry: Registry

    @property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.settings.secret_keys)

    @contextlib.contextmanager
    def api(
        self, *, workers: int = 2, extra_env: Mapping[str, str] | None = None
    ) -> Iterator[Server]:
        """The API (`vaxreg serve`'s app factory) on this stack's database."""
        with self.ctx.server(
            API_FACTORY,
            factory=True,
            workers=workers,
            env={**self.env, **(extra_env or {})},
            ready_path="/healthz",
            ready_timeout_s=60,
        ) as server:
            yield server


@contextlib.contextmanager
def stack(ctx: BenchContext, *, pool_size: int = 10) -> Iterator[Stack]:
    """A fresh database with the contexts' tables, dropped afterwards."""
    with ctx.temp_database() as dbname:
        env = settings_env(ctx, dbname, pool_size=pool_size)
        settings = load_settings(env)
        migrate(settings)
        registry = bootstrap(settings)
        try:
            yield Stack(ctx, dbname, env, settings, registry)
        finally:
            registry.close()


def register_entries(count: int, seed: int) -> list[RegisterEntry]:
    """The valid rows of a synthetic register of `count` citizens."""
    entries = []
    for line, row in enumerate(generate_register(count, seed), start=1):
        with contextlib.suppress(RowRejected):
            entries.append(parse_row(row, line))
    return entries


def import_population(stack: Stack, entries: Sequence[RegisterEntry]) -> dict[str, Any]:
    """Imports `entries` through the population importer; returns its summary."""
    text = io.StringIO()
    write_ndjson((entry.as_row() for entry in entries), text)
    started = time.perf_counter()
    summary = PopulationImport(stack.registry.population, stack.settings.id_key).run(
        io.BytesIO(text.getvalue().encode())
    )
    stack.ctx.log(f"imported {summary.created} citizens in {time.perf_counter() - started:.1f}s")
    return summary.as_dict()


def vaccinable(entries: Sequence[RegisterEntry], on: date) -> list[Citizen]:
    """Living adults on `on` (the products' minimum age is 18 at most)."""
    adult_born_by = on.replace(year=on.year - ADULT_YEARS) - timedelta(days=1)
    return [
        Citizen(e.id_number.value, e.full_name, e.date_of_birth)
        for e in entries
        if e.deceased_on is None and e.date_of_birth <= adult_born_by
    ]


def unit(index: int) -> str:
    return f"{UNIT_PREFIX}{index:04d}"


def lot_number(index: int) -> str:
    return f"BENCH-{index:04d}"


def register_lots(stack: Stack, count: int) -> list[str]:
    """`count` lots of `LOT_PRODUCT`, one per client."""
    lots = [lot_number(i) for i in range(count)]
    for lot in lots:
        stack.registry.immunization.register_lot(
            Request(SETUP_ACTOR), LOT_PRODUCT, lot, LOT_EXPIRES
        )
    return lots


def staff_tokens(stack: Stack, count: int) -> list[str]:
    """One medical-staff token per client, each of its own unit."""
    ttl = timedelta(hours=2)
    return [
        stack.issuer.mint(Role.MEDICAL_STAFF, f"bench-nurse-{i}", unit=unit(i), ttl=ttl)
        for i in range(count)
    ]


def given_at_today() -> str:
    """A dose time earlier today (UTC), for doses given 'now'."""
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return moment.isoformat()


SERIES_START = datetime(2021, 8, 2, 2, 0, tzinfo=UTC)
SERIES_INTERVAL = timedelta(days=28)


def vaccinate_in_bulk(
    stack: Stack, citizens: Sequence[Citizen], *, doses: int = 2, batch: int = 500
) -> int:
    """Gives each citizen a series of `doses` in 2021 through the domain, saved `batch`
    records per `save` (the bulk path of the library, not the API); returns the events.
    """
    app = stack.registry.immunization
    nurse = Actor("bench-nurse", "medical_staff", unit=unit(0))
    now = datetime.now(UTC)
    events = 0
    for first in range(0, len(citizens), batch):
        records = []
        for citizen in citizens[first : first + batch]:
            person = parse_person_id(citizen.id_number)
            record = VaccinationRecord(stack.registry.ids.vaccination_record(person), person, nurse)
            context = DoseContext(citizen.date_of_birth, (), (), CATALOGUE, now)
            for n in range(doses):
                dose = Dose(
                    uuid.uuid4(),
                    LOT_PRODUCT,
                    lot_number(0),
                    SERIES_START + n * SERIES_INTERVAL,
                    nurse.unit or "",
                    nurse.user_id,
                    InjectionSite.LEFT_ARM,
                    DoseKind.PRIMARY,
                )
                record.administer(dose, context, None, nurse)
            events += len(record.pending_events)
            records.append(record)
        app.save(*records)
    return events


@dataclass
class ReadModelSet:
    """The project's projections over a stack, in a Redis namespace of the run."""

    stack: Stack
    runtime: ProjectionRuntime
    namespace: str

    def contexts(self) -> list[str]:
        return sorted({c for p in self.runtime.projections for c in p.contexts})

    def reached(self, context: str) -> int:
        """The lowest position of `context` over the projections that follow it."""
        from projections.engine import positions

        reached = [
            (positions(self.runtime.store, p) or {}).get(context, 0)
            for p in self.runtime.projections
            if context in p.contexts
        ]
        return min(reached, default=0)

    def heads(self) -> dict[str, int]:
        return {c: self.stack.registry.apps[c].head() for c in self.contexts()}

    def wait_caught_up(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(self.reached(c) < head for c, head in self.heads().items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read models did not catch up within {timeout_s}s")
            time.sleep(0.01)

    def rebuild_all(self) -> tuple[int, float]:
        """Rebuilds every projection; returns the events replayed and the seconds taken."""
        heads = self.heads()
        events = sum(heads[c] for p in self.runtime.projections for c in p.contexts)
        started = time.perf_counter()
        self.runtime.rebuild()
        return events, time.perf_counter() - started


@contextlib.contextmanager
def read_models(stack: Stack, *, projector: bool) -> Iterator[ReadModelSet]:
    """The read models under a namespace of this run and stack; with `projector`, their
    worker follows the store in threads of this process until the block ends.

    The runtime is imported here, so scenarios without read models run whatever its state.
    """
    from projections.runtime import ProjectionRuntime

    namespace = stack.ctx.redis_key(f"rm-{stack.dbname}")
    runtime = ProjectionRuntime.from_registry(stack.registry, namespace=namespace)
    models = ReadModelSet(stack, runtime, namespace)
    if projector:
        runtime.start()
    try:
        yield models
    finally:
        if projector:
            runtime.stop()
