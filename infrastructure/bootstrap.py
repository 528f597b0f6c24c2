"""The composition root: settings in, the wired applications out."""

from __future__ import annotations

from dataclasses import dataclass

from application.access_log import AccessLog
from application.audit import Audit
from application.commands import RegistryApplication
from application.ids import IdDeriver
from application.immunization import ImmunizationApp
from application.mobility import MobilityApp
from application.population import PopulationApp
from application.qr import QrTokens
from domain.base import Clock, utc_now
from infrastructure.settings import Settings

QR_PURPOSE = "declaration-qr"


@dataclass
class Registry:
    """Everything the entrypoints use, built once per process."""

    settings: Settings
    clock: Clock
    ids: IdDeriver
    population: PopulationApp
    mobility: MobilityApp
    immunization: ImmunizationApp
    access_log: AccessLog
    qr_tokens: QrTokens

    @property
    def apps(self) -> dict[str, RegistryApplication]:
        return {
            "population": self.population,
            "mobility": self.mobility,
            "immunization": self.immunization,
        }

    @property
    def audit(self) -> Audit:
        return Audit(self.population, self.mobility, self.immunization)

    def heads(self) -> dict[str, int]:
        return {name: app.head() for name, app in self.apps.items()}

    def close(self) -> None:
        for app in self.apps.values():
            app.close()
        self.access_log.close()


def bootstrap(
    settings: Settings, clock: Clock = utc_now, create_tables: bool | None = None
) -> Registry:
    """Wire the three contexts. Tables are created here only for SQLite unless asked;
    on PostgreSQL, `vaxreg migrate` creates them (see `migrate`)."""
    create = _creates_tables(settings, create_tables)
    ids = IdDeriver(settings.id_key)
    qr_tokens = QrTokens(settings.secret_keys.derived(QR_PURPOSE))
    population = population_context(settings, clock, create, ids)
    mobility = MobilityApp(
        settings.application_env("mobility", create),
        clock,
        ids,
        population,
        qr_tokens,
        settings.declaration_validity,
    )
    immunization = ImmunizationApp(
        settings.application_env("immunization", create), clock, ids, population
    )
    access_log = AccessLog(settings.application_env("access", create))
    return Registry(settings, clock, ids, population, mobility, immunization, access_log, qr_tokens)


def population_context(
    settings: Settings,
    clock: Clock = utc_now,
    create_tables: bool | None = None,
    ids: IdDeriver | None = None,
) -> PopulationApp:
    """The population context alone, for the register's import tools (the others' stores
    and connections stay closed)."""
    return PopulationApp(
        settings.application_env("population", _creates_tables(settings, create_tables)),
        clock,
        ids or IdDeriver(settings.id_key),
    )


def _creates_tables(settings: Settings, create_tables: bool | None) -> bool:
    return (not settings.uses_postgres) if create_tables is None else create_tables


def migrate(settings: Settings) -> list[str]:
    """Create the event store tables of every context and of the access log (idempotent)."""
    registry = bootstrap(settings, create_tables=True)
    registry.close()
    return [*registry.apps, "access"]
