"""One router per resource; `ROUTERS` is what the app factory mounts under ``/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from api.http.routers import (
    checks,
    citizens,
    declarations,
    events,
    history,
    imports,
    lots,
    risk_levels,
    vaccinations,
)

ROUTERS: tuple[APIRouter, ...] = (
    citizens.router,
    history.router,
    risk_levels.router,
    declarations.router,
    checks.router,
    vaccinations.router,
    lots.router,
    events.router,
    imports.router,
)
