"""KServe v2 over gRPC driven by the real clients: tritonclient.grpc (sync, asyncio, streaming) and
perf_analyzer -i grpc, against the live server that also answers /v1 (docs/protocol-v2.md, "gRPC")."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio

from loadtest.servers import free_port
from tests.conftest import LiveServer, make_image, sample_jpegs, serve
from tests.perf_analyzer import profile

TOPK = 5


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_batch_size=8, instances=2, grpc_port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[tgrpc.InferenceServerClient]:
    client = tgrpc.InferenceServerClient(live.grpc_target)
    yield client
    client.close()


def v1_top(live: LiveServer, jpeg: bytes, **params: object) -> list[tuple[int, float]]:
    response = httpx.post(f"{live.url}/v1/classify", params={**params, "topk": TOPK}, content=jpeg,
                          headers={"content-type": "image/jpeg"}, timeout=60)
    return [(p["index"], p["probability"]) for p in response.json()["predictions"]]


def image_input(jpegs: list[bytes]) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput("image", [len(jpegs), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[j] for j in jpegs], dtype=object))
    return tensor


def assert_same_as_v1(probabilities: np.ndarray, expected: list[list[tuple[int, float]]]) -> None:
    assert probabilities.shape == (len(expected), 1000)
    for row, top in zip(probabilities, expected, strict=True):
        assert int(row.argmax()) == top[0][0]
        np.testing.assert_allclose([row[i] for i, _ in top], [p for _, p in top], atol=1e-6, rtol=0)


def test_health_metadata_config_index_and_statistics(client: tgrpc.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny-1", "1") and not client.is_model_ready("nope")
    assert "classification" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("tiny-0-tensor", as_json=True)
    assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": ["-1", "224", "224", "3"]}
    config = client.get_model_config("tiny", as_json=True)["config"]
    assert config["platform"] == "ensemble" and len(config["ensemble_scheduling"]["step"]) == 3
    assert int(client.get_model_config("tiny-0").config.max_batch_size) >= 1
    names = {m.name for m in client.get_model_repository_index().models}
    assert {"tiny", "tiny-0", "tiny-2-tensor"} <= names
    stats = client.get_inference_statistics("tiny").model_stats
    assert [s.name for s in stats] == ["tiny-0", "tiny-1", "tiny-2"]
    with pytest.raises(tgrpc.InferenceServerException) as missing:
        client.get_model_metadata("nope")
    assert missing.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize(
    ("model", "crops", "v1_params"),
    [("tiny-0", 1, {}), ("tiny-0", 10, {"crops": 10}), ("tiny-0", 144, {"crops": 144}),
     ("tiny", 10, {"crops": 10, "ensemble": "true"})],
)
def test_sync_client_gets_the_probabilities_of_v1(
    live: LiveServer, client: tgrpc.InferenceServerClient, model: str, crops: int, v1_params: dict
) -> None:
    jpegs = [p.read_bytes() for p in sample_jpegs()[:2]]
    expected = [v1_top(live, j, **v1_params) for j in jpegs]
    result = client.infer(model, [image_input(jpegs)], parameters={"crops": crops}, request_id="g1")
    assert result.get_response().id == "g1"
    assert_same_as_v1(result.as_numpy("probabilities"), expected)
    ranked = client.infer(model, [image_input(jpegs)], parameters={"crops": crops},
                          outputs=[tgrpc.InferRequestedOutput("probabilities", class_count=2)])
    assert [int(row[0].split(b":")[1]) for row in ranked.as_numpy("probabilities")] == [e[0][0] for e in expected]


def test_crops_auto_over_grpc_answers_with_the_rung_it_chose(
    live: LiveServer, client: tgrpc.InferenceServerClient
) -> None:
    jpeg = make_image(seed=3)
    # Idle tiny models fit the best rung of each ladder (service/ladder.py); the response says which.
    member = client.infer("tiny-0", [image_input([jpeg])], parameters={"crops": "auto"})
    chosen = {k: v.int64_param for k, v in member.get_response().parameters.items()}
    assert chosen == {"crops": 144, "models": 1, "evaluations": 144}
    assert_same_as_v1(member.as_numpy("probabilities"), [v1_top(live, jpeg, crops=144)])
    both = client.infer("tiny", [image_input([jpeg])], parameters={"crops": "auto", "models": "auto"})
    assert {k: v.int64_param for k, v in both.get_response().parameters.items()}["evaluations"] == 144 * 3
    fixed = client.infer("tiny-0", [image_input([jpeg])], parameters={"crops": 10})
    assert not fixed.get_response().parameters  # nothing was chosen: nothing to say


def test_asyncio_and_streaming_clients_get_the_probabilities_of_v1(live: LiveServer) -> None:
    jpegs = [p.read_bytes() for p in sample_jpegs()[:3]]
    # 10 crops: three requests at once stay within the queue bound (a 144-crop ensemble request
    # is admitted into an empty queue only, README "max_queue_rows").
    expected = [v1_top(live, j, crops=10, ensemble="true") for j in jpegs]

    async def with_asyncio() -> list[np.ndarray]:
        async with tgrpc_aio.InferenceServerClient(live.grpc_target) as aio:
            answers = await asyncio.gather(*(
                aio.infer("tiny", [image_input([j])], parameters={"crops": 10}) for j in jpegs))
        return [a.as_numpy("probabilities")[0] for a in answers]

    assert_same_as_v1(np.stack(asyncio.run(with_asyncio())), expected)

    answers: queue.Queue = queue.Queue()
    streaming = tgrpc.InferenceServerClient(live.grpc_target)
    streaming.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i, jpeg in enumerate(jpegs):  # all in flight at once on one stream
            streaming.async_stream_infer("tiny", [image_input([jpeg])], request_id=str(i), parameters={"crops": 10})
        streaming.async_stream_infer("tiny", [image_input([b"not an image"])], request_id="bad")
        got = [answers.get(timeout=60) for _ in range(len(jpegs) + 1)]
    finally:
        streaming.stop_stream()
        streaming.close()
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "image" in errors[0].message()  # a bad request ends only itself
    by_id = {r.get_response().id: r.as_numpy("probabilities")[0] for r, e in got if e is None}
    assert_same_as_v1(np.stack([by_id[str(i)] for i in range(len(jpegs))]), expected)


@pytest.mark.parametrize(
    ("model", "tensor", "options", "code", "message"),
    [
        ("tiny", ("FP32", [1, 4]), {}, "INVALID_ARGUMENT", "is BYTES, got FP32"),
        ("tiny", ("BYTES", [1, 1]), {"parameters": {"crops": 7}}, "INVALID_ARGUMENT", "crops"),
        ("tiny", ("BYTES", [1, 1]), {}, "INVALID_ARGUMENT", "image"),  # not an image
        ("nope", ("BYTES", [1, 1]), {}, "NOT_FOUND", "unknown model 'nope'"),
        ("tiny", ("JPEG", [1, 1]), {"timeout": 1}, "DEADLINE_EXCEEDED", "deadline"),  # 1 us: passes while decoding
    ],
)
def test_errors_arrive_as_status_codes(
    client: tgrpc.InferenceServerClient, model: str, tensor: tuple, options: dict, code: str, message: str
) -> None:
    datatype, shape = tensor
    data = {"FP32": np.zeros(shape, np.float32), "BYTES": np.array([[b"not an image"]], dtype=object),
            "JPEG": np.array([[sample_jpegs()[0].read_bytes()]], dtype=object)}[datatype]
    wrong = tgrpc.InferInput("image", shape, "FP32" if datatype == "FP32" else "BYTES")
    wrong.set_data_from_numpy(data)
    with pytest.raises(tgrpc.InferenceServerException, match=message) as error:
        client.infer(model, [wrong], **options)
    assert error.value.status() == f"StatusCode.{code}"


def test_the_token_is_required_in_metadata(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1, grpc_port=free_port(), api_token="s3cret") as live:
        anonymous = tgrpc.InferenceServerClient(live.grpc_target)
        assert anonymous.is_server_live()  # probes stay open unless auth_probes is set
        for headers in (None, {"authorization": "Bearer wrong"}):
            with pytest.raises(tgrpc.InferenceServerException) as refused:
                anonymous.get_model_metadata("tiny", headers=headers)
            assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        good = {"authorization": "Bearer s3cret"}
        result = anonymous.infer("tiny", [image_input([sample_jpegs()[0].read_bytes()])], headers=good)
        assert result.as_numpy("probabilities").shape == (1, 1000)
        anonymous.close()
        with grpc.insecure_channel(live.grpc_target) as channel:  # a stream is refused before it is read
            stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
            with pytest.raises(grpc.RpcError) as refused_stream:
                list(stream(iter([b""]), timeout=30))
        assert refused_stream.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _jpeg_data(tmp_path: Path) -> Path:
    entries = []
    for path in sample_jpegs()[:8]:  # BYTES in an input-data file: base64 of length prefix + JPEG
        jpeg = path.read_bytes()
        entries.append({"image": {"content": {"b64": base64.b64encode(struct.pack("<I", len(jpeg)) + jpeg).decode()},
                                  "shape": [1]}})
    data = tmp_path / "jpegs.json"
    data.write_text(json.dumps({"data": entries}))
    return data


@pytest.mark.parametrize("mode", [[], ["--streaming"]], ids=["sync", "streaming"])
def test_perf_analyzer_over_grpc_at_concurrency_1_to_8(
    perf_analyzer: list[str], live: LiveServer, tmp_path: Path, mode: list[str]
) -> None:
    throughput = profile(perf_analyzer, live.grpc_target, "-i", "grpc", "-m", "tiny", "--input-data",
                         str(_jpeg_data(tmp_path)), "--concurrency-range", "1:8:7", *mode)
    assert sorted(throughput) == [1, 8]
