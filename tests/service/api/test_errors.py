"""service/api/errors.py: every failure as JSON {error, code} with its status, counted and logged."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import REGISTRY
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service import errors as domain
from service.api import errors
from service.metrics import REJECTION_REASONS
from tests.conftest import metric, serve


def _rejections() -> dict[str, float]:
    sample = REGISTRY.get_sample_value
    return {r: sample("googlenet_rejections_total", {"reason": r}) or 0.0 for r in REJECTION_REASONS}


def _body(response: Response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (domain.BadRequest("x"), "bad_input"), (domain.InvalidImage("x"), "bad_input"),
        (domain.UnsupportedMediaType("x"), "bad_input"), (domain.PayloadTooLarge("x"), "too_large"),
        (domain.ImageTooLarge("x"), "too_large"), (domain.Overloaded("x"), "queue_full"),
        (domain.DeadlineExceeded("x"), "deadline"), (domain.BodyTimeout("x"), "deadline"),
        (domain.Unauthorized("x"), "unauthorized"), (domain.ClientGone("x"), "client_gone"),
    ],
)
def test_a_refusal_is_counted_under_its_reason(exc: domain.ServiceError, reason: str) -> None:
    before = _rejections()
    errors.count_rejection(exc)
    after = _rejections()
    assert {r: after[r] - before[r] for r in after} == {r: float(r == reason) for r in after}


@pytest.mark.parametrize(
    "exc", [domain.NotFound("x"), domain.NotReady("x"), domain.InferenceFailed("x"), domain.ServiceError("x")]
)
def test_other_errors_are_not_refusals(exc: domain.ServiceError) -> None:
    before = _rejections()
    errors.count_rejection(exc)
    assert _rejections() == before


@pytest.mark.parametrize(
    ("exc", "logged"),
    [
        (domain.InferenceFailed("the batch broke"), True), (domain.ServiceError("the batch broke"), True),
        (domain.Overloaded("the batch broke"), False), (domain.NotReady("the batch broke"), False),
        (domain.DeadlineExceeded("the batch broke"), False), (domain.BadRequest("the batch broke"), False),
    ],
)
def test_only_server_side_failures_are_logged(
    caplog: pytest.LogCaptureFixture, exc: domain.ServiceError, logged: bool
) -> None:
    with caplog.at_level(logging.ERROR, logger=errors.log.name):
        errors.count_rejection(exc)
    lines = [r.getMessage() for r in caplog.records if r.name == errors.log.name]
    assert lines == (["request failed: the batch broke"] if logged else [])


def test_error_response_is_the_json_shape() -> None:
    response = errors.error_response(418, "teapot", "short and stout", {"X-Why": "because"})
    assert response.status_code == 418 and response.headers["x-why"] == "because"
    assert response.headers["content-type"] == "application/json"
    assert _body(response) == {"error": "short and stout", "code": "teapot"}


def _handle(exc: Exception) -> Response:
    app = FastAPI()
    errors.install(app)
    handler = next(app.exception_handlers[cls] for cls in type(exc).__mro__ if cls in app.exception_handlers)
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "app": app})
    try:  # Starlette calls a handler while the exception is being handled
        raise exc
    except Exception:
        return asyncio.run(handler(request, exc))


def test_a_service_error_keeps_its_status_code_message_and_headers() -> None:
    response = _handle(domain.Overloaded("queue full for tiny-0; retry later", retry_after_s=3))
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    assert _body(response) == {"error": "queue full for tiny-0; retry later", "code": "overloaded"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"loc": ("query", "topk"), "msg": "Input should be >= 1"}], "topk: Input should be >= 1"),
        ([{"loc": ("body", "items", 0), "msg": "bad"}, {"loc": ("header",), "msg": "Field required"}],
         "items.0: bad; Field required"),
        ([{"loc": ("query", "crops")}], "crops: invalid"),
        ([], "invalid request"),
    ],
)
def test_validation_errors_are_bad_requests_naming_the_parameter(raw: list, message: str) -> None:
    before = _rejections()["bad_input"]
    response = _handle(RequestValidationError(raw))
    assert response.status_code == 400
    assert _body(response) == {"error": message, "code": "bad_request"}
    assert _rejections()["bad_input"] == before + 1


@pytest.mark.parametrize(
    ("status", "code"), [(404, "not_found"), (405, "method_not_allowed"), (409, "http_error")]
)
def test_framework_http_errors_get_a_code(status: int, code: str) -> None:
    response = _handle(HTTPException(status, "the detail", headers={"Allow": "GET"}))
    assert response.status_code == status and response.headers["allow"] == "GET"
    assert _body(response) == {"error": "the detail", "code": code}


def test_an_unexpected_error_hides_its_details(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=errors.log.name):
        response = _handle(RuntimeError("secret /opt/path/file.py"))
    assert response.status_code == 500
    assert _body(response) == {
        "error": "internal error; see the server log for this request id", "code": "internal"
    }
    assert "secret" not in response.body.decode()
    assert any(r.exc_info and "secret" in str(r.exc_info[1]) for r in caplog.records)


def test_the_real_app_answers_unknown_routes_and_bad_parameters_as_json(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1) as live, live.client() as client:
        before = metric(live.url, "googlenet_rejections_total", reason="bad_input")
        missing = client.get("/no/such/route")
        bad = client.post("/v1/classify?topk=0", content=b"x", headers={"content-type": "image/png"})
        after = metric(live.url, "googlenet_rejections_total", reason="bad_input")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found", "code": "not_found"}
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"
    assert bad.json()["error"].startswith("topk: ")
    assert after == before + 1
