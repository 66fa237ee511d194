"""Bytes of request bodies in flight, over all requests, bounded: past the budget a request gets
503 + Retry-After (uvicorn buffers without any limit of its own).

Only bytes that arrived count: a declared Content-Length is a promise, and 18 clients that declare
20 MiB and send nothing would otherwise hold the whole budget until their read timeout. Bodies the
app inflates (v2 Content-Encoding) hold their inflated bound too (`hold`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import Overloaded

STATE_KEY = "body_budget"  # where a handler finds the budget: request.state.body_budget


class BodyBudget:
    """ASGI middleware: body bytes are counted as they arrive and given back when the answer is sent
    (the body is held until then)."""

    def __init__(self, app: ASGIApp, *, limit: int, max_body: int) -> None:
        self.app, self.limit, self.max_body = app, limit, max_body
        self.held = 0

    def _take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise Overloaded(f"too many request bodies in flight ({self.limit} bytes); retry later")
        self.held += size

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Hold `size` more bytes for the block (503 past the budget)."""
        self._take(size)
        try:
            yield
        finally:
            self.held -= size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = self
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            size = len(message.get("body", b""))
            self._take(size)
            received += size
            return message

        try:  # an Overloaded raised in `counted` reaches the handler that reads: its JSON 503
            await self.app(scope, counted, send)
        finally:
            self.held -= received
