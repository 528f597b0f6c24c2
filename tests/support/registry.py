"""Building a wired registry for tests, on SQLite or PostgreSQL, with a clock tests move."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from application.commands import Request
from application.immunization import DoseGiven, IdentityAtSite
from application.population import CitizenDetails
from domain.areas import AreaCode
from domain.base import Actor
from domain.doses import DoseKind, InjectionSite
from domain.identity import NationalId, Sex
from infrastructure.bootstrap import Registry, bootstrap, migrate
from infrastructure.settings import Settings, load_settings

TEST_SECRET = "kid1:test-secret-key-0123456789"
TEST_ID_KEY = "test-id-key-0123456789abcdef"

ADMIN = Request(Actor("admin-1", "admin"))
NURSE = Actor("nurse-1", "medical_staff", unit="79-HCM-001")
OFFICER = Actor("officer-1", "checkpoint_officer", checkpoint="HN-CP-07")


@dataclass
class MovableClock:
    now: datetime = field(default_factory=lambda: datetime(2021, 8, 2, 2, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def registry_settings(tmp_path: Path, database_url: str | None = None, **extra: str) -> Settings:
    env = {
        "VAXREG_DATA_DIR": str(tmp_path / "var"),
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
        **extra,
    }
    if database_url:
        env["VAXREG_DATABASE_URL"] = database_url
    return load_settings(env)


def build_registry(settings: Settings, clock: MovableClock) -> Registry:
    if settings.uses_postgres:
        migrate(settings)
    return bootstrap(settings, clock=clock)


LAN = CitizenDetails(
    NationalId("079190123456"),
    "Nguyễn Thị Lan",
    date(1990, 5, 1),
    Sex.FEMALE,
    AreaCode.parse("079.760.26734"),
    "0912345678",
)
LAN_AT_SITE = IdentityAtSite(LAN.person, "nguyễn thị  lan", LAN.date_of_birth)
MINH = CitizenDetails(
    NationalId("001085004321"), "Trần Văn Minh", date(1985, 11, 20), Sex.MALE, AreaCode("001")
)
HOA = CitizenDetails(
    NationalId("048301007777"), "Lê Thị Hoa", date(2001, 2, 14), Sex.FEMALE, AreaCode("048")
)


@contextlib.contextmanager
def lan_registry(tmp_path: Path) -> Iterator[Registry]:
    """An embedded registry on a movable clock, with `LAN` registered and lot PF1 of
    comirnaty usable until June 2022; closed afterwards."""
    registry = build_registry(registry_settings(tmp_path), MovableClock())
    try:
        registry.population.register_citizen(ADMIN, LAN)
        registry.immunization.register_lot(ADMIN, "comirnaty", "PF1", date(2022, 6, 1))
        yield registry
    finally:
        registry.close()


def dose(
    product: str,
    lot: str,
    given_at: datetime,
    kind: DoseKind = DoseKind.PRIMARY,
    override_reason: str | None = None,
) -> DoseGiven:
    return DoseGiven(
        product, lot, given_at, InjectionSite.LEFT_ARM, kind, "nurse-1", override_reason
    )
