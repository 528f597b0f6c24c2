"""Fault-injection and soak runs against real servers on this machine's loopback.

`served_app` is the uvicorn factory these runs serve: the API of ``vaxreg serve`` with
reads of personal data recorded (`api.http.access.install_access_log`).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.http.access import install_access_log
from api.http.app import create_app
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import load_settings

APP_FACTORY = "reliability:served_app"


def served_app() -> FastAPI:
    registry = bootstrap(load_settings())
    app = create_app(registry, close_on_shutdown=True)
    install_access_log(app, registry)
    return app
