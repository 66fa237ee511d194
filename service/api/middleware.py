"""Per-request bookkeeping as plain ASGI: request id, in-flight gauge, request metrics, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs, metrics
from service.api.call import Call

log = logging.getLogger("service.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def request_id(incoming: str) -> str:
    """The client's id when it is safe to log and echo, else a fresh one."""
    return incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = request_id(incoming)
        state = scope.setdefault("state", {})
        call = state["call"] = Call.now()  # the request's life (service/api/call.py) starts at arrival
        state["request_id"] = rid
        status, started = 500, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-content-type-options"]
                # nosniff on every answer: a JSON error or an echo is never rendered as HTML by a browser.
                message["headers"] = [*headers, (b"x-request-id", rid.encode()), _NOSNIFF]
            await send(message)

        bound = logs.REQUEST_ID.set(rid)  # every log line of this request carries its id
        metrics.INFLIGHT_REQUESTS.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.REQUEST_ID.reset(bound)
            metrics.INFLIGHT_REQUESTS.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")  # the template: bounded labels
            call.release()  # an early admission the request never used
            mode = call.mode
            metrics.REQUESTS.labels(route, str(status), mode).inc()
            metrics.REQUEST_DURATION.labels(route, mode).observe(elapsed)
            log.info(
                "request",
                extra={"request_id": rid, "method": scope["method"], "route": route,
                       "status": status, "mode": mode, "duration_ms": round(elapsed * 1000, 2)},
            )
