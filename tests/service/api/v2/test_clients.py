"""The v2 protocol driven by the real clients: tritonclient (HTTP) and Triton's perf_analyzer
(installed by the `perf_analyzer` fixture, tests/perf_analyzer.py)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, make_image, sample_jpegs
from tests.perf_analyzer import profile


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def v1_top1(server: LiveServer, jpeg: bytes, **params: object) -> int:
    response = httpx.post(
        f"{server.url}/v1/classify",
        params=params,
        content=jpeg,
        headers={"content-type": "image/jpeg"},
        timeout=30,
    )
    return response.json()["predictions"][0]["index"]


def test_health_metadata_and_config_through_tritonclient(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny-1", "1")
    assert not client.is_model_ready("missing")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": [-1, 1]}
    config = client.get_model_config("tiny-0-tensor")
    assert config["max_batch_size"] >= 1 and config["input"][0]["data_type"] == "TYPE_UINT8"
    with pytest.raises(triton.InferenceServerException, match="unknown model 'missing'"):
        client.get_model_metadata("missing")


@pytest.mark.parametrize(
    ("model", "crops", "v1_params"),
    [
        ("tiny-0", 1, {}),
        ("tiny", 10, {"crops": 10, "ensemble": "true"}),
    ],
)
def test_real_jpegs_as_bytes_get_the_top1_of_v1_in_binary_and_json(
    server: LiveServer, client: triton.InferenceServerClient, model: str, crops: int, v1_params: dict
) -> None:
    jpegs = [p.read_bytes() for p in sample_jpegs()[:3]]
    expected = [v1_top1(server, j, **v1_params) for j in jpegs]
    binary_in = triton.InferInput("image", [len(jpegs), 1], "BYTES")
    binary_in.set_data_from_numpy(np.array([[j] for j in jpegs], dtype=object))  # length-prefixed binary
    json_in = triton.InferInput("image", [len(jpegs), 1], "BYTES")
    json_in.set_data_from_numpy(
        np.array([[base64.b64encode(j)] for j in jpegs], dtype=object), binary_data=False
    )
    for inputs, binary_out in (([binary_in], True), ([json_in], False)):
        result = client.infer(
            model,
            inputs,
            parameters={"crops": crops},
            request_id="r7",
            outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary_out)],
        )
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(jpegs), 1000) and result.get_response()["id"] == "r7"
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
        assert probabilities.argmax(axis=1).tolist() == expected
    ranked = client.infer(
        model,
        [binary_in],
        parameters={"crops": crops},
        outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
    )
    assert [int(row[0].split(b":")[1]) for row in ranked.as_numpy("probabilities")] == expected


def test_crops_auto_over_http_answers_with_the_rung_it_chose(
    server: LiveServer, client: triton.InferenceServerClient
) -> None:
    jpeg = make_image(seed=4)
    tensor = triton.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[jpeg]], dtype=object))
    # Idle tiny models fit the best rung (service/ladder.py); a 1-us timeout fits none: the cheapest.
    roomy = client.infer("tiny-0", [tensor], parameters={"crops": "auto"})
    assert roomy.get_response()["parameters"] == {"crops": 144, "models": 1, "evaluations": 144}
    assert v1_top1(server, jpeg, crops=144) == int(np.argmax(roomy.as_numpy("probabilities")))
    with pytest.raises(triton.InferenceServerException, match="deadline") as refused:
        client.infer("tiny", [tensor], parameters={"crops": "auto", "models": "auto"}, timeout=1)
    assert refused.value.status() in ("422", "504")


def test_errors_reach_tritonclient_as_messages(client: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("image", [1, 4], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(triton.InferenceServerException, match="is BYTES, got FP32"):
        client.infer("tiny", [wrong])


# --- perf_analyzer --------------------------------------------------------------------------------


def _served_infer_requests(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "googlenet_requests_total"
        and s.labels.get("route") == "/v2/models/{name}/infer"
        and s.labels.get("status") == "200"
    )


def test_perf_analyzer_drives_the_ensemble_with_real_jpegs(
    perf_analyzer: list[str], server: LiveServer, tmp_path: Path
) -> None:
    # BYTES in an input-data file: base64 of each element's 4-byte length prefix plus the JPEG
    # (perf_analyzer's input_data.md); one entry per image, sent round-robin.
    entries = []
    for path in sample_jpegs()[:8]:
        jpeg = path.read_bytes()
        b64 = base64.b64encode(struct.pack("<I", len(jpeg)) + jpeg).decode()
        entries.append({"image": {"content": {"b64": b64}, "shape": [1]}})
    data = tmp_path / "jpegs.json"
    data.write_text(json.dumps({"data": entries}))
    before = _served_infer_requests(server)
    target = server.url.removeprefix("http://")
    throughput = profile(perf_analyzer, target, "-m", "tiny", "--input-data", str(data), "--concurrency-range", "1:4")
    assert sorted(throughput) == [1, 2, 3, 4]
    assert _served_infer_requests(server) - before >= 4  # the requests really went through the service


def test_perf_analyzer_drives_the_tensor_form_in_batches(
    perf_analyzer: list[str], server: LiveServer
) -> None:
    target = server.url.removeprefix("http://")
    throughput = profile(perf_analyzer, target, "-m", "tiny-0-tensor", "-b", "2", "--concurrency-range", "1")
    assert list(throughput) == [1]
