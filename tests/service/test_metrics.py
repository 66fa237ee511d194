"""/metrics after real traffic: names, types, units, labels, and values that moved as the traffic implies.

The prometheus_client registry is process-global (other tests' servers write to it too), so every
check is a delta between two scrapes of this module's own server, taken around its own traffic.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import gpu
from tests.conftest import LiveServer, make_image, serve

JPEG = {"content-type": "image/jpeg"}
MODELS = ["tiny-0", "tiny-1", "tiny-2"]
MAX_BATCH = 4
# name -> (type, label names); the contract of service/metrics.py (docs/architecture.md 8)
EXPECTED = {
    "googlenet_requests": ("counter", {"route", "status", "mode"}),
    "googlenet_request_duration_seconds": ("histogram", {"route", "mode"}),
    "googlenet_inflight_requests": ("gauge", set()),
    "googlenet_rejections": ("counter", {"reason"}),
    "googlenet_preprocess_duration_seconds": ("histogram", {"crops"}),
    "googlenet_queue_wait_seconds": ("histogram", {"model"}),
    "googlenet_inference_duration_seconds": ("histogram", {"model"}),
    "googlenet_batch_rows": ("histogram", {"model"}),
    "googlenet_batch_fill_ratio": ("histogram", {"model"}),
    "googlenet_batches": ("counter", {"model", "outcome"}),
    "googlenet_evaluated_rows": ("counter", {"model"}),
    "googlenet_queue_rows": ("gauge", {"model"}),
    "googlenet_model_info": ("gauge", {"model", "version", "sha256", "provider", "precision"}),
    "googlenet_walk_evaluated_rows": ("histogram", {"mode"}),
    "googlenet_walk_stops": ("counter", {"mode", "reason"}),
    "googlenet_partial_answers": ("counter", {"mode"}),
}
UNITS = ("_seconds", "_rows", "_ratio", "_info", "_requests", "_bytes")


class Scrape:
    """One parsed /metrics: families by name, and a sample lookup summed over matching labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        family = self.families[re.sub(r"_(total|bucket|count|sum|created)$", "", sample)]
        return sum(
            s.value
            for s in family.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )


def scrape(live: LiveServer) -> Scrape:
    response = httpx.get(f"{live.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def settle(live: LiveServer, before: Scrape, sample: str, expected: float, **labels: str) -> Scrape:
    """Scrape until `sample` moved by `expected` (the access middleware counts after the reply is sent)."""
    deadline = time.monotonic() + 10
    while True:
        after = scrape(live)
        if (
            after.value(sample, **labels) - before.value(sample, **labels) >= expected
            or time.monotonic() > deadline
        ):
            return after
        time.sleep(0.01)


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(
        tiny_repo,
        max_batch_size=MAX_BATCH,
        instances=1,
        max_queue_rows=64,
        max_queue_delay_ms=1,
        max_body_bytes=200_000,
    ) as server:
        yield server


def test_metric_families_have_their_types_units_and_bounded_labels(live: LiveServer) -> None:
    with live.client() as client:
        assert (
            client.post("/v1/classify", params={"crops": 10}, content=make_image(), headers=JPEG).status_code
            == 200
        )
    after = scrape(live)
    # `<name>_created` gauges are client_python's creation timestamps (OpenMetrics), not ours
    ours = {
        name: f
        for name, f in after.families.items()
        if name.startswith("googlenet_") and not name.endswith("_created")
    }
    assert set(EXPECTED) <= set(ours)
    for name, family in ours.items():
        assert family.type in ("counter", "gauge", "histogram"), (
            f"{name}: {family.type} (summaries don't aggregate)"
        )
        if name in EXPECTED:
            kind, labels = EXPECTED[name]
            assert family.type == kind, name
            for s in family.samples:
                assert set(s.labels) - {"le"} == labels, (name, s.labels)
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {f"{name}_total", f"{name}_created"}, name
        else:
            assert name.endswith(UNITS), f"{name} has no base-unit suffix"
            assert not re.search(r"_(ms|milliseconds|us|percent)$", name), name
        if family.type == "histogram":
            assert any(s.labels.get("le") == "+Inf" for s in family.samples), name
    # closed label values: route templates, numeric statuses, crops x members modes, known reasons
    for s in ours["googlenet_requests"].samples:
        assert s.labels["route"].startswith("/") or s.labels["route"] == "unmatched"
        assert "?" not in s.labels["route"] and s.labels["status"].isdigit()
        assert re.fullmatch(r"\d+x\d+|adaptive|none", s.labels["mode"])
    reasons = {s.labels["reason"] for s in ours["googlenet_rejections"].samples}
    assert {"queue_full", "deadline", "bad_input", "too_large"} <= reasons


def test_values_move_as_the_traffic_implies(live: LiveServer) -> None:
    before = scrape(live)
    with live.client() as client:
        for seed in range(3):  # sequential: each batch holds one request's rows, so counts are exact
            r = client.post(
                "/v1/classify",
                params={"crops": 10, "ensemble": True},
                content=make_image(seed=seed),
                headers=JPEG,
            )
            assert r.status_code == 200 and r.json()["evaluations"] == 30
        assert client.post("/v1/classify", content=make_image(seed=9), headers=JPEG).status_code == 200
    after = settle(
        live, before, "googlenet_requests_total", 3, route="/v1/classify", status="200", mode="10x3"
    )

    def delta(sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    assert delta("googlenet_requests_total", route="/v1/classify", status="200", mode="10x3") == 3
    assert delta("googlenet_requests_total", route="/v1/classify", status="200", mode="1x1") == 1
    assert delta("googlenet_request_duration_seconds_count", route="/v1/classify", mode="10x3") == 3
    assert delta("googlenet_request_duration_seconds_sum", route="/v1/classify", mode="10x3") > 0
    assert delta("googlenet_preprocess_duration_seconds_count", crops="10") == 3
    assert delta("googlenet_preprocess_duration_seconds_count", crops="1") == 1
    for model in MODELS:
        rows = 30 + (1 if model == "tiny-0" else 0)
        batches = delta("googlenet_batches_total", model=model, outcome="ok")
        assert delta("googlenet_evaluated_rows_total", model=model) == rows
        assert delta("googlenet_batch_rows_sum", model=model) == rows
        # the batch-size histogram counts one observation per batch run
        assert delta("googlenet_batch_rows_count", model=model) == batches
        assert delta("googlenet_inference_duration_seconds_count", model=model) == batches
        assert delta("googlenet_batch_fill_ratio_count", model=model) == batches
        assert delta("googlenet_batch_fill_ratio_sum", model=model) == pytest.approx(rows / MAX_BATCH)
        # 10 rows in batches of at most 4 rows: at least 3 batches per request
        assert batches >= 3 * 3 + (1 if model == "tiny-0" else 0)
        assert (
            delta("googlenet_batch_rows_bucket", model=model, le="4.0") == batches
        )  # never above max_batch_size
        assert delta("googlenet_queue_wait_seconds_count", model=model) == batches  # one slice per batch here
        assert after.value("googlenet_queue_rows", model=model) == 0  # idle again
        assert delta("googlenet_batches_total", model=model, outcome="error") == 0
    assert after.value("googlenet_inflight_requests") == 1  # the scrape itself


def test_every_rejection_reason_is_counted(live: LiveServer) -> None:
    before = scrape(live)
    with live.client() as client:
        primary = live.app.state.serving.classifier.ensemble.queues[MODELS[0]]
        live.on_loop(primary.reserve, primary.max_queue_rows)  # the queue is full of requests still decoding
        try:
            full = client.post("/v1/classify", content=make_image(), headers=JPEG)
        finally:
            live.on_loop(primary.release, primary.max_queue_rows)
        assert (
            full.status_code == 503 and full.json()["code"] == "overloaded" and "retry-after" in full.headers
        )
        late = client.post("/v1/classify", params={"deadline_ms": 0.001}, content=make_image(), headers=JPEG)
        assert late.status_code == 422  # could never be done in 1 us: refused at once, not queued to a 504
        assert (
            client.post("/v1/classify", params={"crops": 7}, content=make_image(), headers=JPEG).status_code
            == 400
        )
        assert client.post("/v1/classify", content=b"not an image", headers=JPEG).status_code == 422
        big = client.post("/v1/classify", content=b"\xff" * 300_000, headers=JPEG)
        assert big.status_code == 413
    after = settle(live, before, "googlenet_requests_total", 1, route="/v1/classify", status="413")

    def delta(sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    assert delta("googlenet_rejections_total", reason="queue_full") == 1
    assert delta("googlenet_rejections_total", reason="infeasible") == 1
    assert delta("googlenet_rejections_total", reason="bad_input") == 2
    assert delta("googlenet_rejections_total", reason="too_large") == 1
    for status, count in (("503", 1), ("400", 1), ("422", 2), ("413", 1)):
        assert delta("googlenet_requests_total", route="/v1/classify", status=status) == count, status
    for model in MODELS:  # nothing of a refused request reached a model
        assert delta("googlenet_evaluated_rows_total", model=model) == 0


def test_model_info_names_each_served_file(live: LiveServer, tiny_repo: Path) -> None:
    info = scrape(live).families["googlenet_model_info"]
    for model in MODELS:
        meta = json.loads((tiny_repo / model / "model.json").read_text())
        sha = meta["files"]["1/model.onnx"]["sha256"]
        matching = [s for s in info.samples if s.labels["model"] == model and s.labels["sha256"] == sha]
        assert len(matching) == 1 and matching[0].value == 1
        assert matching[0].labels | {} == {
            "model": model,
            "version": "1",
            "sha256": sha,
            "provider": "cpu",
            "precision": "fp32",
        }


def test_gpu_series_are_absent_without_a_gpu_and_present_with_one(live: LiveServer) -> None:
    present = gpu.install(CollectorRegistry())  # NVML answers only where a driver and a device exist
    names = {n for n in scrape(live).families if n.startswith("googlenet_gpu_")}
    if present:
        assert names == set(gpu.METRIC_NAMES)
    else:
        assert names == set()  # absent, not zero


def test_nvml_readings_become_gauges_in_base_units() -> None:
    """The translation from NVML readings to series, with a stand-in for the driver (no GPU here)."""

    class NVMLError(Exception):
        pass

    def handle(index: int) -> int:
        if index == 1:
            raise NVMLError("GPU is lost")  # one failing device must not hide the others
        return index

    nvml = SimpleNamespace(
        NVMLError=NVMLError,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=37, memory=5),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=3 * 2**30, total=80 * 2**30, free=77 * 2**30),
    )
    registry = CollectorRegistry()
    registry.register(gpu.NvmlCollector(nvml))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert set(families) == set(gpu.METRIC_NAMES)
    for family in families.values():
        assert family.type == "gauge" and [s.labels for s in family.samples] == [
            {"gpu": "0", "uuid": "GPU-0"}
        ]
    assert families[gpu.UTILIZATION].samples[0].value == pytest.approx(0.37)
    assert families[gpu.MEMORY_USED].samples[0].value == 3 * 2**30
    assert families[gpu.MEMORY_TOTAL].samples[0].value == 80 * 2**30
