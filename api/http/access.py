"""Recording reads of personal data, and keeping personal data out of the logs.

`install_access_log(app, registry)` (called by `create_app` after its own middleware)
records into the registry's ``access`` context, mounts ``GET /v1/access-log`` and wraps the
app in `AccessLogMiddleware`: a successful read on a watched route is recorded with who
read (from the bearer token the route has verified), whom (a pseudonym) and what.

Reads of a record or history are recorded *before* the answer is sent: if the access log
cannot be written within a few seconds the client gets a 503 instead of the data.
Checkpoint lookups, served ahead of this middleware (:mod:`api.http.hotpath`), queue
their own entries on the same recorder, written in batches off the hot path. On a clean
shutdown (the ASGI lifespan's shutdown) everything queued is written; a crash loses at
most the lookups of the last flush interval (0.2 s).

`MaskPersonalData` is a logging filter replacing ID numbers, phone numbers and the
person segment of ``/v1/citizens/...`` paths in every record; `log_config` is uvicorn's
logging configuration with that filter on its handlers and on the root logger's.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from api.http.problems import ServiceUnavailable, problem_for_exception
from application.access_log import AccessEntry, AccessRecorder
from application.ids import IdDeriver
from domain.base import Actor
from domain.errors import DomainError
from domain.identity import NationalId, parse_person_id
from infrastructure.bootstrap import Registry

logger = logging.getLogger(__name__)

RECORD_TIMEOUT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Watched:
    """A route whose successful answers are reads to record."""

    what: str
    before_answer: bool = True
    """Record before the answer is sent; otherwise queue it (the hot path)."""
    parameter: str = "id_number"


WATCHED: Mapping[str, Watched] = {
    "/v1/citizens/{id_number}/history": Watched("history"),
    "/v1/citizens/{id_number}/eligibility": Watched("eligibility"),
}
"""Path templates of the reads of personal data behind this middleware; the checkpoint
lookups record themselves with `AccessRecorder.submit`."""


def reader_of(claims: Mapping[str, Any], ids: IdDeriver) -> Actor:
    """The reader as recorded: a citizen under their pseudonym, never their ID number."""
    role = str(claims.get("role", ""))
    subject = str(claims.get("sub", ""))
    if role == "citizen":
        subject = ids.pseudonym(NationalId(subject))
    return Actor(subject, role, claims.get("unit"), claims.get("checkpoint"))


def _claims(scope: Scope) -> dict[str, Any] | None:
    """The claims of the bearer token, which the route answering 2xx has verified."""
    authorization = Headers(scope=scope).get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims


class AccessLogMiddleware:
    """Records the watched reads; a path outside every watched template's literal prefix
    (the text before its first parameter) passes straight through."""

    def __init__(
        self,
        app: ASGIApp,
        recorder: AccessRecorder,
        ids: IdDeriver,
        watched: Mapping[str, Watched] = WATCHED,
        timeout: float = RECORD_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.ids = ids
        self.watched = watched
        self.timeout = timeout
        self._watched_prefixes = tuple(template.split("{", 1)[0] for template in watched)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if scope["type"] != "http" or not scope["path"].startswith(self._watched_prefixes):
            await self.app(scope, receive, send)
            return
        refused = False

        async def recording_send(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                refused = not await self._record(scope)
                if refused:
                    error = ServiceUnavailable(
                        "reads are not being recorded; try again later",
                        retry_after=RETRY_AFTER_SECONDS,
                    )
                    await problem_for_exception(error, instance=scope["path"])(scope, receive, send)
                    return
            if not refused:
                await send(message)

        await self.app(scope, receive, recording_send)

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await run_in_threadpool(self.recorder.drain)
            return message

        return wrapped

    async def _record(self, scope: Scope) -> bool:
        """Record a watched read; False if it had to be recorded first and could not be."""
        template = getattr(scope.get("route"), "path_format", None)
        watched = self.watched.get(template) if isinstance(template, str) else None
        if watched is None:
            return True
        entry = self._entry(scope, watched)
        if entry is None:
            return True
        if not watched.before_answer:
            self.recorder.queue(entry)
            return True
        done = self.recorder.submit(entry, urgent=True)
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), self.timeout)
        except Exception as error:
            logger.warning("access log: a read was not recorded (%s)", type(error).__qualname__)
            return False
        return True

    def _entry(self, scope: Scope, watched: Watched) -> AccessEntry | None:
        claims = _claims(scope)
        raw = scope.get("path_params", {}).get(watched.parameter)
        if claims is None or not isinstance(raw, str):
            return None
        try:
            subject = self.ids.pseudonym(parse_person_id(raw))
            reader = reader_of(claims, self.ids)
        except DomainError:
            return None
        return AccessEntry(reader, watched.what, subject, datetime.now(UTC))


def install_access_log(
    app: FastAPI,
    registry: Registry,
    *,
    watched: Mapping[str, Watched] = WATCHED,
) -> AccessRecorder:
    """Record reads of `app`'s watched routes and serve the log to auditors."""
    from api.http.routers import access_log

    recorder = AccessRecorder(registry.access_log)
    app.state.access_log = registry.access_log
    app.state.access_recorder = recorder
    app.include_router(access_log.router)
    app.add_middleware(AccessLogMiddleware, recorder=recorder, ids=registry.ids, watched=watched)
    return recorder


_PERSONAL: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(/(?:citizens|checkpoint(?:/by-token)?)/)[^/?#\s\"']+"), r"\1***"),
    (re.compile(r"((?:id_number|subject|phone|target)=)[^&#\s\"']+"), r"\1***"),
    (re.compile(r"\+?\d{9,}"), "***"),
)


def mask(text: str) -> str:
    """`text` without ID numbers, phone numbers or the person in a citizen or checkpoint path."""
    for pattern, replacement in _PERSONAL:
        text = pattern.sub(replacement, text)
    return text


def _masked(value: object) -> object:
    return mask(value) if isinstance(value, str) else value


class MaskPersonalData(logging.Filter):
    """Masks personal data in a record's message, arguments and formatted traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _masked(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return True


FILTER_NAME = "personal_data"


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging configuration, masked, with the root logger at `level`:
    ``uvicorn.run(..., log_config=log_config())``."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {FILTER_NAME: {"()": f"{__name__}.MaskPersonalData"}}
    for handler in config["handlers"].values():
        handler["filters"] = [FILTER_NAME]
    config["root"] = {"handlers": ["default"], "level": level.upper()}
    return config
