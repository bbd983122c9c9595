"""A request body limit for the scoring server, as plain ASGI middleware.

MLflow's scoring server (FastAPI under uvicorn) reads any body whole, so one
huge request can take all the server's memory. :class:`BodyLimit` reads the
body first, keeping at most ``max_bytes`` of it, and answers 413 with a
short JSON error when a request is larger (by its ``Content-Length``, or
as a chunked body streams in); smaller requests reach the app unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BYTES = 10 * 2**20  # 10 MiB: tens of thousands of unit rows per request
DRAIN_FACTOR = 4  # a refused body is read (and dropped) up to 4x the limit, then cut off


class BodyLimit:
    """ASGI middleware: HTTP requests with a body over ``max_bytes`` get a 413."""

    def __init__(self, app: App, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = declared is not None and (not declared.isdigit()
                                              or int(declared) > self.max_bytes)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.max_bytes
            if not too_large:
                chunks.append(chunk)
            # read (and drop) the rest of a refused body, so the client hears the 413,
            # up to a bound: a client that never stops is cut off
            if not message.get("more_body", False) or size > DRAIN_FACTOR * self.max_bytes:
                break
        if too_large:
            await self._too_large(send)
            return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        payload = json.dumps({
            "error_code": "REQUEST_TOO_LARGE",
            "message": f"the request body is over the limit of {self.max_bytes:,} bytes; "
                       "send fewer rows per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
