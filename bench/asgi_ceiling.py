"""The ceiling app: raw ASGI, no framework.

`/ping` answers a fixed body without touching Redis (the bare endpoint, for measuring a
load generator's own ceiling; it accepts any method and drains a request body). Every
other path does one Redis GET of `VAXREG_BENCH_CEILING_KEY` and returns the bytes, which
is the least a checkpoint lookup served from Redis can cost: with `redis.asyncio`, or
with the API's own `PipelinedRedis` when ``VAXREG_BENCH_CEILING_CLIENT=pipelined``.

Run with `uvicorn bench.asgi_ceiling:app`; `VAXREG_BENCH_CEILING_REDIS_URL` names the server.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis.asyncio as aioredis

from projections.pipelined import PipelinedRedis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PING_BODY = b'{"ok":true}'
_JSON_HEADERS = [(b"content-type", b"application/json")]

_client: aioredis.Redis | PipelinedRedis | None = None
_key = ""


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    global _client, _key
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            url = os.environ.get("VAXREG_BENCH_CEILING_REDIS_URL", "redis://127.0.0.1:6379/0")
            pipelined = os.environ.get("VAXREG_BENCH_CEILING_CLIENT") == "pipelined"
            _client = PipelinedRedis.from_url(url) if pipelined else aioredis.Redis.from_url(url)
            _key = os.environ["VAXREG_BENCH_CEILING_KEY"]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _client is not None:
                await _client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        more = scope["method"] not in ("GET", "HEAD")
        while more:
            more = (await receive()).get("more_body", False)
        await _respond(send, 200, PING_BODY)
        return
    if _client is None:
        raise RuntimeError("the ceiling app needs lifespan startup")
    value = await _client.execute_command("GET", _key)
    if value is None:
        await _respond(send, 404, b'{"error":"not found"}')
    else:
        await _respond(send, 200, value if isinstance(value, bytes) else value.encode())
