"""Admin import of a population-register extract sent as an NDJSON request body.

The body is streamed into the importer: never held whole, each line limited as in
`infrastructure.population.rows`. The body must therefore be exempt from the app's
request size limit. The answer is the summary and the first `MAX_REJECTS_SHOWN`
rejected rows (the count of all of them is in the summary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, ClassVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.http.dependencies import API_PREFIX, RegistryDep, actor_of
from api.http.problems import ProblemError, problem_responses
from api.http.roles import Role
from api.http.security import Principal, require
from infrastructure.population.encoding import Rejected
from infrastructure.population.importer import PopulationImport

router = APIRouter(prefix=f"{API_PREFIX}/admin/population", tags=["admin"])
IMPORTS_PATH = f"{API_PREFIX}/admin/population/imports"
"""Streamed with a per-line limit, so the app's body size limit does not apply here."""

NDJSON = "application/x-ndjson"
MAX_REJECTS_SHOWN = 1000


class UnsupportedMediaType(ProblemError):
    status: ClassVar[int] = 415
    code: ClassVar[str] = "unsupported_media_type"


class RejectedRow(BaseModel):
    line: int
    reason: str
    message: str


class ImportReport(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    events: int
    seconds: float
    rejected_by_reason: dict[str, int]
    rejected_rows: list[RejectedRow]
    """The first `MAX_REJECTS_SHOWN` rejected rows, in line order."""
    rejected_rows_truncated: bool


class StreamedBody:
    """A blocking `readline` over an async request body, for use from a worker thread."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._ended = False

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            if self._ended:
                return self._take(len(self._buffer))
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._ended = True
            else:
                self._buffer += chunk

    def _take(self, size: int) -> bytes:
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken


@router.post(
    "/imports",
    responses=problem_responses(401, 403, 415, 503),
    summary="Import a population-register extract (NDJSON body, streamed)",
)
async def import_extract(
    request: Request,
    principal: Annotated[Principal, Depends(require(Role.ADMIN))],
    registry: RegistryDep,
) -> ImportReport:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != NDJSON:
        raise UnsupportedMediaType(f"send the extract as {NDJSON}", expected=NDJSON)
    shown: list[Rejected] = []

    def keep(rejected: Rejected) -> None:
        if len(shown) < MAX_REJECTS_SHOWN:
            shown.append(rejected)

    importer = PopulationImport(
        registry.population,
        registry.settings.id_key,
        actor=actor_of(principal),
        on_reject=keep,
    )
    body = StreamedBody(request.stream())
    summary = await anyio.to_thread.run_sync(lambda: importer.run(body, "ndjson"))
    return ImportReport(
        rows=summary.rows,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        rejected=summary.rejected,
        events=summary.events,
        seconds=round(summary.seconds, 3),
        rejected_by_reason=dict(summary.rejected_by_reason),
        rejected_rows=[RejectedRow(line=r.line, reason=r.reason, message=r.message) for r in shown],
        rejected_rows_truncated=summary.rejected > len(shown),
    )
