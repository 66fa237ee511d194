"""service/api/deps.py: handlers get the serving object once it is loaded, and only while it is ready."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.requests import Request

from service.api import deps
from service.errors import NotReady
from service.serving import Serving, open_serving
from service.settings import Settings
from tests.conftest import serve


@pytest.fixture(scope="module")
def serving(tiny_repo: Path) -> Iterator[Serving]:
    opened = open_serving(Settings(model_repository=tiny_repo, providers="cpu", models=1, instances=1))
    yield opened
    opened.classifier.close()


def _request(app: FastAPI) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "app": app})


def test_loaded_refuses_while_the_models_load() -> None:
    app = FastAPI()
    app.state.serving = None
    with pytest.raises(NotReady, match="still loading") as caught:
        asyncio.run(deps.loaded(_request(app)))
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}


@pytest.mark.parametrize("ready", [True, False])
def test_loaded_gives_the_serving_object_draining_or_not(serving: Serving, ready: bool) -> None:
    app = FastAPI()
    app.state.serving = serving
    serving.accepting = ready
    assert asyncio.run(deps.loaded(_request(app))) is serving


def test_ready_passes_a_ready_serving_object(serving: Serving) -> None:
    serving.accepting = True
    assert asyncio.run(deps.ready(serving)) is serving


def test_ready_refuses_while_draining(serving: Serving) -> None:
    serving.accepting = False
    with pytest.raises(NotReady, match="not ready") as caught:
        asyncio.run(deps.ready(serving))
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}


def test_ready_is_built_on_loaded() -> None:
    # Overriding `loaded` (tests' dependency_overrides) must feed `ready` too.
    (_, marker) = typing.get_args(deps.Ready)
    assert marker.dependency is deps.ready
    (_, inner) = typing.get_args(typing.get_type_hints(deps.ready, include_extras=True)["serving"])
    assert inner.dependency is deps.loaded
    (_, outer) = typing.get_args(deps.Loaded)
    assert outer.dependency is deps.loaded


def test_over_http_loaded_routes_answer_while_draining_and_ready_routes_refuse(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1) as live, live.client() as client:
        real = live.app.state.serving
        draining = Serving(real.settings, real.repository, real.plan, real.classifier, accepting=False)
        live.app.dependency_overrides[deps.loaded] = lambda: draining
        listed = client.get("/v1/models")  # a Loaded route
        refused = client.get("/v2/models/tiny")  # a Ready route
        live.app.dependency_overrides.clear()
        served = client.get("/v2/models/tiny")
    assert listed.status_code == 200 and listed.json()["name"] == "tiny"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "not_ready" and "shutting down" in refused.json()["error"]
    assert served.status_code == 200
