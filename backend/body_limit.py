"""A cap on request bodies, counted as they stream in (a declared length is not trusted).

Data set uploads have their own, larger limit, checked as they stream to disk
(backend/datasets/imports.py), and pass through here; any other body over
STACKLAB_MAX_REQUEST_KB is refused with 413 before the route parses it. (FastAPI's own
`max_body_size` answers a bare "Content Too Large" and fixes the limit when the app is
built; this one names the setting and reads it per request.)
"""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.settings import get_settings

STREAMED_PATHS = ("/api/datasets/upload",)


def _message(limit: int) -> str:
    return f"the request body is larger than {limit // 1024:,} KiB (STACKLAB_MAX_REQUEST_KB)"


class _TooLarge(HTTPException):
    """Raised from receive(): FastAPI passes an HTTPException from body parsing through
    to the error handlers (JSON under /api, an error page for a browser)."""

    def __init__(self, limit: int):
        super().__init__(413, _message(limit))


class BodyLimit:
    """Pure ASGI middleware, so the body is never buffered before it is counted."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STREAMED_PATHS):
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_request_kb * 1024
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await _refuse(send, limit)  # before the app runs: nothing is read or parsed
            return
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:  # a reader other than FastAPI's body parsing let it through
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _message(limit)}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
