"""Fault-injection and soak runs against real servers on this machine's loopback.

`APP_FACTORY` is the uvicorn factory these runs serve, the API of ``vaxreg serve``.
`run_projector` is the projector process they start, kill and restart (``vaxreg
projector``'s work).
"""

from __future__ import annotations

from infrastructure.bootstrap import bootstrap
from infrastructure.settings import load_settings
from projections.runtime import ProjectionRuntime

APP_FACTORY = "api.http.app:app_from_environment"


def run_projector() -> None:
    ProjectionRuntime.from_registry(bootstrap(load_settings())).run_forever()
