"""service/api/health.py: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from loadtest.servers import free_port
from service.api import health
from tests.conftest import LiveServer, make_image, serve


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, models=2, instances=1) as server:
        yield server


def _set_ready(live: LiveServer, ready: bool) -> None:
    live.on_loop(setattr, live.app.state.serving, "accepting", ready)


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


def test_a_crashed_dispatch_loop_fails_every_probe_with_its_reason(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1, grpc_port=free_port()) as crashed:
        batcher = crashed.app.state.serving.classifier.ensemble.queues["tiny-0"]

        def broken(now: float) -> list:
            raise RuntimeError("a bug in the cut")

        crashed.on_loop(setattr, batcher, "take", broken)
        with crashed.client() as client:
            answer = client.post("/v1/classify", content=make_image(), headers={"content-type": "image/jpeg"})
            probes = {path: client.get(path) for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")}
        with grpc.insecure_channel(crashed.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            live = stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
            ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=10)
    assert answer.status_code == 500 and "dispatch loop crashed" in answer.json()["error"]
    for path, response in probes.items():  # a restart is the one fix: liveness says so too
        assert response.status_code == 503, path
        if path != "/v2/health/ready":
            assert response.json() == {"error": answer.json()["error"], "code": "failed"}, path
    assert not live.live and not ready.ready


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
