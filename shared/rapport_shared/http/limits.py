"""Request body size limit for every HTTP API (``RAPPORT_HTTP_MAX_BODY_BYTES``, default 256 KiB).

A pure ASGI middleware, outermost in ``create_app``: a ``Content-Length`` above the limit is
refused before the app runs; a body without one (chunked) is counted as it streams in and
refused the moment it passes the limit. Either way the answer is 413 with a JSON problem body
naming the reason, and no handler ever sees the body (so nothing is written).
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from ..metrics import HTTP_BODY_REFUSED

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    """Raised into the app's ``receive`` when the streamed body passes the limit."""


def problem(limit: int) -> bytes:
    return json.dumps({
        "type": "urn:rapport:problem:request_too_large",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"request body is larger than the limit of {limit} bytes",
        "field": "body",
        "error": "request_too_large",
        "limit_bytes": limit,
    }).encode()


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        HTTP_BODY_REFUSED.inc()
        body = problem(self.max_bytes)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app makes of the refused body (400, 500): ours is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large or started:
                raise
        if too_large and not started:
            await self._refuse(send)
