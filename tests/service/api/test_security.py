"""service/api/security.py: bearer-token parsing and checking, the auth middleware and its install order."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import Message, Scope

from service.api import security
from service.api.security import BearerAuth, bearer_token, check_token
from service.settings import Settings


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER abc", "abc"), ("  Bearer   abc  ", "abc"),
        ("Bearer a b", "a b"), ("Bearer", None), ("Bearer   ", None), ("Basic abc", None), ("", None),
        ("abc", None), ("Bearerabc", None),
    ],
)
def test_bearer_token_reads_the_bearer_scheme_only(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        ("Bearer s3cret", (True, True)), ("bearer s3cret", (True, True)), ("Bearer s3cre", (False, True)),
        ("Bearer s3cret!", (False, True)), ("Basic s3cret", (False, False)), ("", (False, False)),
    ],
)
def test_check_token_says_right_and_offered(header: str, verdict: tuple[bool, bool]) -> None:
    assert check_token(header, b"s3cret") == verdict


class Sent:
    """The status, headers and body the middleware sent for one request to `path`."""

    def __init__(self, middleware: BearerAuth, path: str, authorization: str | None = None) -> None:
        headers = [(b"authorization", authorization.encode("latin-1"))] if authorization is not None else []
        scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
        messages: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            messages.append(message)

        asyncio.run(middleware(scope, receive, send))
        self.status = messages[0]["status"]
        self.headers = {k.decode(): v.decode() for k, v in messages[0]["headers"]}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])


def _auth(*, protect_probes: bool = False) -> BearerAuth:
    return BearerAuth(PlainTextResponse("inner"), token="s3cret", protect_probes=protect_probes)


def _unauthorized() -> float:
    return REGISTRY.get_sample_value("googlenet_rejections_total", {"reason": "unauthorized"}) or 0.0


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/docs", "/redoc", "/static/app.js"])
def test_pages_and_docs_need_no_token(path: str) -> None:
    sent = Sent(_auth(protect_probes=True), path)
    assert (sent.status, sent.body) == (200, b"inner")


@pytest.mark.parametrize("path", sorted(security.PROBES))
def test_probes_are_open_unless_protected(path: str) -> None:
    assert Sent(_auth(), path).status == 200
    assert Sent(_auth(protect_probes=True), path).status == 401
    assert Sent(_auth(protect_probes=True), path, "Bearer s3cret").status == 200


def test_a_missing_token_gets_a_401_with_the_bearer_challenge() -> None:
    before = _unauthorized()
    sent = Sent(_auth(), "/v1/classify")
    assert sent.status == 401 and sent.headers["www-authenticate"] == 'Bearer realm="googlenet"'
    assert json.loads(sent.body) == {
        "error": "this endpoint needs 'Authorization: Bearer <token>'", "code": "unauthorized"
    }
    assert _unauthorized() == before + 1


def test_a_wrong_token_is_named_invalid() -> None:
    sent = Sent(_auth(), "/v2/models/tiny/infer", "Bearer guess")
    assert sent.status == 401
    assert sent.headers["www-authenticate"] == 'Bearer realm="googlenet", error="invalid_token"'
    assert json.loads(sent.body) == {"error": "the bearer token is not valid", "code": "unauthorized"}


def test_another_scheme_counts_as_no_token() -> None:
    sent = Sent(_auth(), "/v1/models", "Basic czNjcmV0")
    assert sent.status == 401 and "invalid_token" not in sent.headers["www-authenticate"]


def test_the_right_token_reaches_the_app() -> None:
    sent = Sent(_auth(), "/v1/models", "Bearer s3cret")
    assert (sent.status, sent.body) == (200, b"inner")


def test_a_prefix_match_is_not_public() -> None:
    # "/docs" is public; "/docsecret" and "/static" (no slash) are not.
    assert Sent(_auth(), "/docsecret").status == 401
    assert Sent(_auth(), "/static").status == 401


def test_non_http_scopes_pass_through() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: object, send: object) -> None:
        seen.append(scope)

    asyncio.run(BearerAuth(inner, token="s3cret", protect_probes=True)({"type": "lifespan"}, None, None))
    assert seen == [{"type": "lifespan"}]


def _installed(**settings: object) -> list:
    app = FastAPI()
    security.install(app, Settings(**settings))
    return app.user_middleware


def test_nothing_is_installed_by_default() -> None:
    assert _installed() == []


def test_cors_runs_before_auth_so_preflights_need_no_token() -> None:
    outer, inner = _installed(api_token=SecretStr("s3cret"), auth_probes=True, cors_origins="https://a.example")
    assert (outer.cls, inner.cls) == (CORSMiddleware, BearerAuth)
    assert inner.kwargs == {"token": "s3cret", "protect_probes": True}
    assert outer.kwargs["allow_origins"] == ["https://a.example"]
    assert outer.kwargs["allow_credentials"] is False
    assert "Inference-Header-Content-Length" in outer.kwargs["expose_headers"]
    assert "Authorization" in outer.kwargs["allow_headers"]


def test_each_middleware_is_installed_on_its_own() -> None:
    assert [m.cls for m in _installed(api_token=SecretStr("t"))] == [BearerAuth]
    assert [m.cls for m in _installed(cors_origins="https://a.example")] == [CORSMiddleware]
