"""The /v1 API against the real server (uvicorn on a loopback port, real ONNX Runtime sessions)."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.preprocess import preprocess
from tests.conftest import LiveServer, make_image, metric, onnx_probabilities, sample_jpegs, serve
from tests.tiny_models import write_repository

JPEG = {"content-type": "image/jpeg"}


def classify(client: httpx.Client, data: bytes, **params: object) -> httpx.Response:
    return client.post("/v1/classify", params=params, content=data, headers=JPEG)


def direct_probabilities(repo: Path, members: list[str], rows: np.ndarray) -> np.ndarray:
    """What ONNX Runtime says on the same crops, averaged like the paper: crops, then members."""
    return onnx_probabilities(repo, members, rows).mean(axis=0)


@pytest.mark.parametrize(("crops", "models"), [(1, 1), (10, 1), (144, 1), (1, 3), (10, 3), (144, 3)])
def test_answers_equal_onnx_runtime_on_the_same_crops(
    server: LiveServer, tiny_repo: Path, crops: int, models: int
) -> None:
    data = make_image(360, 270, seed=crops + models)
    with server.client() as client:
        body = classify(client, data, crops=crops, models=models, topk=1000).json()
    service = np.zeros(1000)
    for p in body["predictions"]:
        service[p["index"]] = p["probability"]
    members = [f"tiny-{i}" for i in range(models)]
    expected = direct_probabilities(tiny_repo, members, preprocess(data, crops, max_pixels=10**8))
    assert body["members"] == members and body["evaluations"] == crops * models
    assert np.abs(service - expected).max() <= 1e-6
    # the members really differ, so the ensemble average is observable
    if models == 3:
        single = direct_probabilities(tiny_repo, members[:1], preprocess(data, crops, max_pixels=10**8))
        assert np.abs(single - expected).max() > 1e-3


def test_response_shape_and_multipart_images(server: LiveServer) -> None:
    images = [make_image(seed=1), make_image(300, 400, seed=2, fmt="PNG")]
    files = [("image", (f"{i}.img", d, "application/octet-stream")) for i, d in enumerate(images)]
    with server.client() as client:
        body = client.post("/v1/classify", params={"ensemble": "true", "topk": 3}, files=files).json()
        single = classify(client, images[1], ensemble="true", topk=3).json()
    assert body["members"] == ["tiny-0", "tiny-1", "tiny-2"] and body["evaluations"] == 3
    assert len(body["results"]) == 2 and body["predictions"] == body["results"][0]["predictions"]
    assert body["results"][1]["predictions"] == single["predictions"]  # batching does not change answers
    probs = [p["probability"] for p in body["predictions"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3
    stages = {"decode", "crops", "preprocess", "queue", "copy_in", "compute", "copy_out", "inference", "total"}
    assert set(body["timings_ms"]) == stages | {"runs"}
    runs = body["timings_ms"]["runs"]  # each member's part, in member order
    assert [r["model"] for r in runs] == body["members"] and all(r["batches"] >= 1 and r["compute"] > 0 for r in runs)
    assert body["timings_ms"]["compute"] == pytest.approx(sum(r["compute"] for r in runs))
    assert body["timings_ms"]["decode"] > 0 and body["timings_ms"]["crops"] > 0
    assert body["trained"] is False and body["model"] == "tiny" and body["request_id"]


def test_models_health_and_openapi(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "live"}
        assert client.get("/readyz").json()["status"] == "ready"
        models = client.get("/v1/models").json()
        assert [m["name"] for m in models["members"]] == ["tiny-0", "tiny-1", "tiny-2"]
        assert models["provider"] == "cpu" and len(models["members"][0]["sha256"]) == 64
        # unset limits resolve to the CPU defaults (README, Configuration): the wait bound and the memory cap
        assert models["batching"] == {"max_batch_size": 8, "max_queue_delay_ms": 0.0,
                                      "max_queue_wait_ms": 8000.0, "max_queue_rows": 4096, "instances": 2}
        assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


BAD_REQUESTS = [
    ({"crops": 7}, JPEG, None, 400, "bad_request"),
    ({"crops": "many"}, JPEG, None, 400, "bad_request"),
    ({"topk": 0}, JPEG, None, 400, "bad_request"),
    ({"topk": 1001}, JPEG, None, 400, "bad_request"),
    ({"models": 4}, JPEG, None, 400, "bad_request"),
    ({"ensemble": "perhaps"}, JPEG, None, 400, "bad_request"),
    ({"deadline_ms": -5}, JPEG, None, 400, "bad_request"),
    ({}, JPEG, b"", 400, "bad_request"),
    ({}, {"content-type": "text/plain"}, None, 415, "unsupported_media_type"),
    ({}, JPEG, b"this is text, labelled as a JPEG", 422, "invalid_image"),
    ({}, JPEG, "truncated", 422, "invalid_image"),
    ({}, JPEG, "huge", 422, "image_too_large"),
    ({}, JPEG, "over-limit", 413, "too_large"),
    ({"deadline_ms": 0.001}, JPEG, None, 422, "deadline_infeasible"),  # never feasible: refused at once
]


@pytest.fixture(scope="module")
def strict_server(tiny_repo: Path) -> LiveServer:
    with serve(tiny_repo, max_body_bytes=200_000, max_image_pixels=1_000_000, max_queue_rows=100) as live:
        yield live


def test_a_request_larger_than_the_queue_runs_when_the_queue_is_empty(strict_server: LiveServer) -> None:
    with strict_server.client() as client:  # 144 rows, 100-row queue: refused only beside other work
        response = classify(client, make_image(), crops=144)
        assert response.status_code == 200, response.text
        assert response.json()["evaluations"] == 144


@pytest.mark.parametrize(("params", "headers", "body", "status", "code"), BAD_REQUESTS)
def test_every_error_is_json_and_the_next_request_succeeds(
    strict_server: LiveServer, params: dict, headers: dict, body: object, status: int, code: str
) -> None:
    good = make_image()
    data = {
        None: good, "truncated": good[: len(good) // 3], "huge": make_image(1200, 1000, high=100),
        "over-limit": b"\xff\xd8" + b"\0" * 300_000,
    }.get(body, body) if isinstance(body, str) or body is None else body
    evaluated = metric(strict_server.url, "googlenet_evaluated_rows_total")
    with strict_server.client() as client:
        response = client.post("/v1/classify", params=params, content=data, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code and response.json()["error"]
        if status == 503:
            assert response.headers["retry-after"]
        assert metric(strict_server.url, "googlenet_evaluated_rows_total") == evaluated  # cost no evaluation
        assert classify(client, good).status_code == 200


def test_unknown_routes_and_methods_are_json(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/v1/nothing").json()["code"] == "not_found"
        response = client.get("/v1/classify")
        assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_multipart_without_an_image_field_is_400(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/classify", files=[("photo", ("a.jpg", make_image(), "image/jpeg"))])
        assert response.status_code == 400 and "image" in response.json()["error"]


def test_concurrent_requests_are_served_in_fewer_batches(tiny_repo: Path) -> None:
    n = 12
    with serve(tiny_repo, models=1, max_batch_size=n, max_queue_delay_ms=10_000, instances=1) as live:
        before = metric(live.url, "googlenet_batch_rows_count", model="tiny-0")
        images = [make_image(seed=i) for i in range(n)]
        with live.client() as client, concurrent.futures.ThreadPoolExecutor(n) as pool:
            statuses = list(pool.map(lambda d: classify(client, d).status_code, images))
        assert statuses == [200] * n
        batches = metric(live.url, "googlenet_batch_rows_count", model="tiny-0") - before
        assert batches < n  # a full batch of n rows closes at once; no timing involved
        assert metric(live.url, "googlenet_batch_rows_sum", model="tiny-0") >= n


def test_a_failing_batch_is_a_json_500_and_the_service_keeps_serving(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "poisoned", members=1, poison=True)
    with serve(repo, max_batch_size=1) as live, live.client() as client:
        red = make_image(fmt="PNG", high=256)  # holds a 255 value: the poisoned model fails on it
        response = classify(client, red)
        assert response.status_code == 500 and response.json()["code"] == "inference_failed"
        assert "Traceback" not in response.text and str(repo) not in response.text
        assert classify(client, make_image(fmt="PNG")).status_code == 200


def test_real_jpegs_are_classified(server: LiveServer) -> None:
    with server.client() as client:
        for path in sample_jpegs()[:5]:
            assert classify(client, path.read_bytes(), crops=10).status_code == 200


def test_crops_auto_and_ensemble_auto_say_what_they_chose(server: LiveServer) -> None:
    with server.client() as client:
        # an idle device and the default deadline: the top of the ladder, every member at 144 crops
        best = classify(client, make_image(), crops="auto", ensemble="auto").json()
        assert best["auto"] is True and best["crops"] == 144 and len(best["members"]) == 3
        assert best["evaluations"] == 432
        held = classify(client, make_image(), crops="auto", ensemble="false").json()
        assert held["crops"] == 144 and held["members"] == ["tiny-0"]  # the fixed dimension is kept
        fixed = classify(client, make_image(), crops=10).json()
        assert fixed["auto"] is False and fixed["evaluations"] == 10
        assert classify(client, make_image(), crops="most").status_code == 400
        text = client.get("/metrics").text
    assert 'googlenet_auto_choices_total{mode="144x3"}' in text
    assert 'googlenet_requests_total{mode="144x3",route="/v1/classify",status="200"}' in text


@pytest.mark.parametrize("multipart", [False, True])
def test_a_request_is_admitted_and_counted_once(server: LiveServer, multipart: bool) -> None:
    """A raw image is admitted before its body is read and that admission is used: the estimate
    histograms count each request once whether or not it was admitted early."""
    names = ("googlenet_estimated_wait_seconds_count", "googlenet_estimated_completion_seconds_count",
             "googlenet_completion_estimate_ratio_count")
    before = [metric(server.url, n) for n in names]
    with server.client() as client:
        if multipart:
            answer = client.post("/v1/classify", files=[("image", ("a.jpg", make_image(), "image/jpeg"))])
        else:
            answer = classify(client, make_image())
    assert answer.status_code == 200
    assert [metric(server.url, n) - b for n, b in zip(names, before, strict=True)] == [1, 1, 1]
    assert metric(server.url, "googlenet_queue_rows") == 0  # nothing left reserved
