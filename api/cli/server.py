"""`vaxreg serve` and `vaxreg token`: run the HTTP API, and mint access tokens for operators."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from api.http.roles import Role
from application.commands import Request
from domain.base import Actor
from domain.errors import DomainError
from infrastructure.bootstrap import bootstrap
from infrastructure.population.generator import generate_register
from infrastructure.population.rows import RowRejected, parse_row
from infrastructure.settings import Settings, load_settings

if TYPE_CHECKING:
    from api.http.security import TokenIssuer

APP_FACTORY = "api.http.app:app_from_environment"
DEMO_CITIZENS = 200
DEMO_LOTS = (("vaxzevria", "AZ-DEMO-1"), ("comirnaty", "PF-DEMO-1"), ("spikevax", "MD-DEMO-1"))
DEMO_UNIT = "79-HCM-001"
DEMO_CHECKPOINT = "HN-CP-07"
DEMO_LOADER = Actor("demo-loader", "admin")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load a small synthetic population and print tokens.")
    ] = False,
) -> None:
    """Run the HTTP API (OpenAPI documentation at /docs)."""
    # the web stack is imported by this command only: the others start faster
    from api import serving
    from api.http.access import log_config

    settings = load_settings()
    if not settings.uses_postgres and workers > 1:
        typer.echo(
            "the embedded SQLite store and in-process read models serve one process: "
            "running 1 worker (set VAXREG_DATABASE_URL and VAXREG_REDIS_URL for more)",
            err=True,
        )
        workers = 1
    if demo:
        loaded = load_demo(settings)
        typer.echo(f"demo: {loaded} citizens in the register, lots {_lot_names()}")
        for line in demo_tokens(settings, _first_citizen()):
            typer.echo(line)
    typer.echo(f"serving on http://{host}:{port} (docs at /docs), {workers} worker(s)", err=True)
    serving.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(),
    )


def token(
    role: Annotated[Role, typer.Option(help="The role the token grants.")],
    subject: Annotated[str, typer.Option(help="User id; a citizen's is their ID number.")],
    unit: Annotated[str | None, typer.Option(help="Medical unit (medical_staff only).")] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="Checkpoint (checkpoint_officer only).")
    ] = None,
    scopes: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Extra scope, e.g. identifiers (repeatable)."),
    ] = None,
    ttl: Annotated[float, typer.Option(min=0.01, help="Lifetime in hours.")] = 8.0,
) -> None:
    """Mint an access token signed with the current key of VAXREG_SECRET_KEY."""
    issuer = _issuer(load_settings())
    try:
        minted = issuer.mint(role, subject, unit, checkpoint, scopes or (), timedelta(hours=ttl))
    except DomainError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from error
    typer.echo(minted)


def load_demo(settings: Settings, count: int = DEMO_CITIZENS) -> int:
    """Register a synthetic population and a few lots; running it again changes nothing."""
    registry = bootstrap(settings)
    try:
        loaded = 0
        for line, row in enumerate(generate_register(count, seed=1), start=1):
            try:
                entry = parse_row(row, line)
            except RowRejected:
                continue
            details = entry.details()
            request = Request(DEMO_LOADER, f"demo-citizen-{entry.id_number}")
            try:
                registry.population.register_citizen(request, details)
            except DomainError:
                continue
            loaded += 1
        for product, lot in DEMO_LOTS:
            request = Request(DEMO_LOADER, f"demo-lot-{product}-{lot}")
            registry.immunization.register_lot(request, product, lot, date(2030, 12, 31))
        return loaded
    finally:
        registry.close()


def _issuer(settings: Settings) -> TokenIssuer:
    """Imported here, like the web stack in `serve`: the other commands start without it."""
    from api.http.security import TokenIssuer

    return TokenIssuer(settings.secret_keys)


def demo_tokens(settings: Settings, citizen: str) -> list[str]:
    """One ready-to-use token per role, as lines to print."""
    issuer = _issuer(settings)
    minted = {
        "admin": issuer.mint(Role.ADMIN, "demo-admin"),
        f"medical_staff (unit {DEMO_UNIT})": issuer.mint(
            Role.MEDICAL_STAFF, "demo-nurse", unit=DEMO_UNIT
        ),
        f"checkpoint_officer ({DEMO_CHECKPOINT})": issuer.mint(
            Role.CHECKPOINT_OFFICER, "demo-officer", checkpoint=DEMO_CHECKPOINT
        ),
        f"citizen ({citizen})": issuer.mint(Role.CITIZEN, citizen),
        "auditor": issuer.mint(Role.AUDITOR, "demo-auditor"),
        "integrator": issuer.mint(Role.INTEGRATOR, "demo-integrator"),
        "integrator (identifiers scope)": issuer.mint(
            Role.INTEGRATOR, "demo-integrator-id", scopes=("identifiers",)
        ),
    }
    lines = ["tokens (8 hours; paste into Authorize at /docs):"]
    lines += [f"  {name}:\n    {value}" for name, value in minted.items()]
    return lines


def _first_citizen() -> str:
    return str(parse_row(next(generate_register(1, seed=1)), 1).id_number)


def _lot_names() -> str:
    return ", ".join(f"{product}/{lot}" for product, lot in DEMO_LOTS)
