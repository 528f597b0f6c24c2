"""One router per resource; `ROUTERS` is what the app factory mounts under ``/v1``.

The busiest come first: a request is matched against the routers in this order, and
every router it passes over costs the event loop a route match."""

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
    vaccinations.router,
    declarations.router,
    checks.router,
    citizens.router,
    history.router,
    risk_levels.router,
    lots.router,
    events.router,
    imports.router,
)
