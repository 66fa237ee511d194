"""service/api/middleware.py: request id, in-flight gauge, request metrics and access log per request."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from service import logs
from service.api.middleware import RequestContext, request_id
from tests.conftest import make_image, metric, serve

HEX = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_c-9", "x" * 64])
def test_a_safe_client_id_is_kept(incoming: str) -> None:
    assert request_id(incoming) == incoming


@pytest.mark.parametrize(
    "incoming", ["", "x" * 65, "two words", "line\nbreak", "caf\u00e9", "a/b", "<script>"]
)
def test_an_unsafe_or_missing_id_is_replaced(incoming: str) -> None:
    assert HEX.match(request_id(incoming))


def test_fresh_ids_differ() -> None:
    assert request_id("") != request_id("")


def _requests(route: str, status: str, mode: str = "none") -> float:
    labels = {"route": route, "status": status, "mode": mode}
    return REGISTRY.get_sample_value("googlenet_requests_total", labels) or 0.0


def _inflight() -> float:
    return REGISTRY.get_sample_value("googlenet_inflight_requests") or 0.0


class Call:
    """Runs one HTTP request through RequestContext around `inner`, collecting what is sent."""

    def __init__(self, inner: object, headers: list | None = None, path: str = "/x") -> None:
        self.scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": headers or []}
        self.sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            self.sent.append(message)

        asyncio.run(RequestContext(inner)(self.scope, receive, send))  # type: ignore[arg-type]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])


def test_the_response_carries_the_clients_id_and_the_state_has_it() -> None:
    call = Call(PlainTextResponse("ok"), [(b"x-request-id", b"abc-123")])
    assert call.headers[b"x-request-id"] == b"abc-123"
    state = dict(call.scope["state"])
    life = state.pop("call")  # the request's life (service/api/call.py) starts at arrival
    assert isinstance(life.arrived, float) and life.mode == "none" and life.reservation is None
    assert state == {"request_id": "abc-123"}


def test_an_unsafe_id_is_not_echoed() -> None:
    call = Call(PlainTextResponse("ok"), [(b"x-request-id", b"bad id\r\n")])
    assert HEX.match(call.headers[b"x-request-id"].decode())


def test_the_log_context_and_the_gauge_cover_the_request() -> None:
    seen: dict[str, object] = {}
    before = _inflight()

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen["id"], seen["inflight"] = logs.REQUEST_ID.get(), _inflight()
        await PlainTextResponse("ok")(scope, receive, send)

    call = Call(inner, [(b"x-request-id", b"ctx-1")])
    assert seen == {"id": "ctx-1", "inflight": before + 1}
    assert _inflight() == before and logs.REQUEST_ID.get() != "ctx-1"
    assert call.headers[b"x-request-id"] == b"ctx-1"


def test_requests_are_counted_by_route_template_status_and_mode() -> None:
    route = Route("/items/{item}", PlainTextResponse("ok"))

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        scope["state"]["call"].mode = "10x3"  # what a handler sets once the request is checked
        await PlainTextResponse("made", status_code=201)(scope, receive, send)

    before = _requests("/items/{item}", "201", "10x3")
    Call(inner, path="/items/42")
    assert _requests("/items/{item}", "201", "10x3") == before + 1


def test_an_unrouted_request_is_counted_as_unmatched() -> None:
    before = _requests("unmatched", "404")
    Call(PlainTextResponse("no", status_code=404), path="/nowhere")
    assert _requests("unmatched", "404") == before + 1


def test_a_crash_before_the_response_counts_as_500_and_still_propagates() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    before, inflight = _requests("unmatched", "500"), _inflight()
    with pytest.raises(RuntimeError, match="boom"):
        Call(inner)
    assert _requests("unmatched", "500") == before + 1 and _inflight() == inflight


def test_every_request_gets_an_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        Call(PlainTextResponse("ok", status_code=202), [(b"x-request-id", b"log-1")], path="/p")
    (record,) = [r for r in caplog.records if r.name == "service.access"]
    assert record.getMessage() == "request"
    fields = {k: getattr(record, k) for k in ("request_id", "method", "route", "status", "mode")}
    assert fields == {
        "request_id": "log-1", "method": "GET", "route": "unmatched", "status": 202, "mode": "none"
    }
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope: Scope = {"type": "lifespan"}
    asyncio.run(RequestContext(inner)(scope, None, None))  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan"}]


def test_the_real_app_labels_by_route_template_and_mode(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=2, instances=1) as live, live.client() as client:
        before = metric(live.url, "googlenet_requests_total", route="/v1/classify", status="200", mode="1x2")
        response = client.post(
            "/v1/classify?models=2", content=make_image(64, 64), headers={"content-type": "image/jpeg"}
        )
        models = client.get("/v2/models/tiny-1")
        after = metric(live.url, "googlenet_requests_total", route="/v1/classify", status="200", mode="1x2")
        template = metric(live.url, "googlenet_requests_total", route="/v2/models/{name}", status="200")
    assert response.status_code == 200 and after == before + 1
    assert response.headers["x-request-id"] == response.json()["request_id"]
    assert models.status_code == 200 and template >= 1
