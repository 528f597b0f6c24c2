"""Fault-injection and soak runs against real servers on this machine's loopback.

`served_app` is the uvicorn factory these runs serve: the API of ``vaxreg serve`` with
reads of personal data recorded (`api.http.access.install_access_log`). `run_projector`
is the projector process they start, kill and restart (``vaxreg projector``'s work).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.http.access import install_access_log
from api.http.app import create_app
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import load_settings
from projections.runtime import ProjectionRuntime

APP_FACTORY = "reliability:served_app"


def served_app() -> FastAPI:
    registry = bootstrap(load_settings())
    runtime = ProjectionRuntime.from_registry(registry)
    app = create_app(
        registry,
        read_models=runtime.read_models,
        lag_source=runtime.lag_seconds,
        close_on_shutdown=True,
    )
    install_access_log(app, registry)
    return app


def run_projector() -> None:
    ProjectionRuntime.from_registry(bootstrap(load_settings())).run_forever()
