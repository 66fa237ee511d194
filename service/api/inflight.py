"""Bytes of request bodies in flight, over all requests, bounded: past the budget a request gets
503 + Retry-After before its body is read (uvicorn buffers without any limit of its own)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import count_rejection, error_response
from service.errors import Overloaded


class BodyBudget:
    """ASGI middleware: a declared Content-Length is reserved up front, a chunked body as it arrives;
    the bytes are given back when the answer is sent (the body is held until then)."""

    def __init__(self, app: ASGIApp, *, limit: int, max_body: int) -> None:
        self.app, self.limit, self.max_body = app, limit, max_body
        self.held = 0

    def _take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Overloaded(f"too many request bodies in flight ({self.limit} bytes); retry later")
        self.held += size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # A body over max_body_bytes is the app's 413 before it is read: it costs no budget.
        reserved = min(int(declared), self.max_body) if declared.isdigit() else 0
        try:
            self._take(reserved)
        except Overloaded as exc:
            count_rejection(exc)
            await error_response(exc.status, exc.code, exc.message, exc.headers)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received, reserved
            message = await receive()
            received += len(message.get("body", b""))
            if received > reserved:  # chunked, or more than declared: reserve as it arrives
                self._take(received - reserved)
                reserved = received
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            self.held -= reserved
