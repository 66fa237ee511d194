"""HTTP/1.1 connection limits uvicorn lacks, on its own httptools protocol: a request's line and
headers must arrive within `header_timeout_ms` of the connection opening (or of the previous answer),
and hold at most `max_header_bytes` (431) with a target of at most `max_url_bytes` (414).

uvicorn has `timeout_keep_alive` (idle after an answer, given `idle_timeout_ms`) but no bound before
the first request, none on headers that trickle in a byte at a time, and httptools buffers a header
of any size: 144 idle or slow connections stayed open, and 12 MiB of headers were read, before this.
Refusals are the service's JSON errors, then the connection closes (docs/reliability.md, "Connections").
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import metrics
from service.settings import Settings

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    max_header_bytes: int
    max_url_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout_ms / 1000, settings.max_header_bytes, settings.max_url_bytes)


def protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn.Config(http=...)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self.url: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.url is not None and len(self.url) > self.limits.max_url_bytes:
            self._refuse(414, "too_large", f"the request target exceeds {self.limits.max_url_bytes} bytes")
        elif self._in_head and self._head_bytes > self.limits.max_header_bytes:  # headers not over yet
            self._refuse(431, "too_large", f"the request's headers exceed {self.limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        if len(self.url) > self.limits.max_url_bytes:
            return  # data_received answers 414 before the app sees it
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle is not None:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer (idle_timeout_ms)
        if not self.transport.is_closing():
            self._start_head()

    def _start_head(self) -> None:
        self._stop_head_timer()
        self._in_head, self._head_bytes, self.url = True, 0, None
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        if self.transport.is_closing() or not self._in_head:
            return
        if self._head_bytes == 0:  # nothing asked: an idle connection just closes
            self.transport.close()
            return
        self._refuse(408, "header_timeout",
                     f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        metrics.REJECTIONS.labels("deadline" if status == 408 else "too_large").inc()
        body = json.dumps({"error": message, "code": code}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"x-content-type-options: nosniff\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
        self._in_head = False
        self._stop_head_timer()
