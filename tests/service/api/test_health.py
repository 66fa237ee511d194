"""service/api/health.py: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from service.api import health
from tests.conftest import LiveServer, serve


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, models=2, instances=1) as server:
        yield server


def _set_ready(live: LiveServer, ready: bool) -> None:
    live.on_loop(setattr, live.app.state.serving, "ready", ready)


def test_healthz_says_live(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "live"}


def test_readyz_lists_the_served_models(live: LiveServer) -> None:
    with live.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "models": ["tiny-0", "tiny-1"]}


def test_readyz_fails_while_draining_but_healthz_stays_live(live: LiveServer) -> None:
    _set_ready(live, False)
    try:
        with live.client() as client:
            ready, alive = client.get("/readyz"), client.get("/healthz")
    finally:
        _set_ready(live, True)
    assert ready.status_code == 503 and ready.json() == {"error": "not ready", "code": "not_ready"}
    assert "retry-after" not in ready.headers  # a probe's answer, not a request to retry
    assert alive.status_code == 200


def test_readyz_fails_while_the_models_load() -> None:
    app = FastAPI()
    app.state.serving = None
    response = asyncio.run(health.readyz(Request({"type": "http", "headers": [], "app": app})))
    assert response.status_code == 503 and json.loads(response.body)["code"] == "not_ready"


def test_metrics_is_a_prometheus_scrape_of_the_service(live: LiveServer) -> None:
    with live.client() as client:
        client.get("/healthz")
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"googlenet_requests", "googlenet_model_info", "googlenet_queue_rows"} <= families


def test_only_the_probes_are_in_the_api_schema(live: LiveServer) -> None:
    with live.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "/healthz" in paths and "/readyz" in paths and "/metrics" not in paths
