"""service/api/grpc/stream.py: the requests of one ModelStreamInfer stream run concurrently, each
answered with its id; an error ends only its own request."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from loadtest.servers import free_port
from service.api.grpc.stream import ROUTE
from tests.conftest import LiveServer, make_image, serve
from tests.tiny_models import write_repository


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    # Batches of 2 rows that wait up to 10 s for a second row: only concurrent requests share one.
    with serve(tiny_repo, models=1, max_batch_size=2, instances=1, max_queue_delay_ms=10_000,
               grpc_port=free_port()) as server:
        yield server


@pytest.fixture
def stub(live: LiveServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(live.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _request(request_id: str, model: str = "tiny-0", image: bytes | None = None) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, id=request_id)
    message.inputs.add(name="image", datatype="BYTES", shape=[1, 1])
    data = make_image(64, 64) if image is None else image
    message.raw_input_contents.append(len(data).to_bytes(4, "little") + data)
    return message


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0  # the server runs in this process


def _requests(status: str, mode: str) -> float:
    return _sample("googlenet_requests_total", route=ROUTE, status=status, mode=mode)


def test_requests_of_one_stream_run_concurrently_and_keep_their_ids(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    batches = _sample("googlenet_batches_total", model="tiny-0", outcome="ok")
    before = _requests("200", "1x1")
    answers = list(stub.ModelStreamInfer(iter([_request("first"), _request("second")]), timeout=60))
    assert sorted(a.infer_response.id for a in answers) == ["first", "second"]
    assert all(a.error_message == "" and a.infer_response.outputs[0].shape == [1, 1000] for a in answers)
    # One after the other, each would wait out the 10-s delay in a batch of its own.
    assert _sample("googlenet_batches_total", model="tiny-0", outcome="ok") - batches == 1
    assert _requests("200", "1x1") - before == 2


def test_an_error_ends_only_its_own_request(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    before = _requests("404", "none")
    stream = [_request("good-1"), _request("lost", model="resnet"), _request("good-2")]
    answers = {a.infer_response.id: a for a in stub.ModelStreamInfer(iter(stream), timeout=60)}
    assert set(answers) == {"good-1", "lost", "good-2"}
    lost = answers["lost"]
    assert lost.error_message.startswith("unknown model 'resnet'")
    assert lost.infer_response.model_name == "resnet" and not lost.infer_response.outputs
    assert answers["good-1"].error_message == answers["good-2"].error_message == ""
    assert _requests("404", "none") - before == 1


def test_a_bad_image_is_answered_with_its_message(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    rejected = _sample("googlenet_rejections_total", reason="bad_input")
    (answer,) = stub.ModelStreamInfer(iter([_request("junk", image=b"not an image")]), timeout=60)
    assert answer.error_message and answer.infer_response.id == "junk"
    assert _sample("googlenet_rejections_total", reason="bad_input") == rejected + 1


def test_a_message_that_is_not_protobuf_is_a_bad_request(live: LiveServer) -> None:
    before = _requests("400", "none")
    with grpc.insecure_channel(live.grpc_target) as channel:
        stream = channel.stream_stream(ROUTE, response_deserializer=pb.ModelStreamInferResponse.FromString)
        (answer,) = list(stream(iter([b"\xff\xff\xff"]), timeout=30))
    assert answer.error_message == "a ModelStreamInfer request is not a valid protobuf message"
    assert not answer.HasField("infer_response")
    assert _requests("400", "none") - before == 1


def test_an_empty_stream_ends_cleanly(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    assert list(stub.ModelStreamInfer(iter([]), timeout=30)) == []


def _until(check: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s  # a bounded wait for the server to get there
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.01)


def test_a_client_that_leaves_drops_its_queued_rows(
    live: LiveServer, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    batcher = live.app.state.serving.classifier.ensemble.queues["tiny-0"]
    gone, release = _requests("499", "1x1"), threading.Event()

    def requests() -> Iterator[pb.ModelInferRequest]:
        yield _request("waiting")  # one row: it waits for a second that never comes
        release.wait(30)  # the stream stays open until the client cancels

    call = stub.ModelStreamInfer(requests(), timeout=60)
    try:
        _until(lambda: live.on_loop(lambda: batcher.queued_rows) == 1)
        call.cancel()
        _until(lambda: _requests("499", "1x1") == gone + 1)
    finally:
        release.set()
    evaluated = _sample("googlenet_evaluated_rows_total", model="tiny-0")
    # The next row fills the batch of 2 if the gone row still counts: the batch runs at once, without it.
    (answer,) = stub.ModelStreamInfer(iter([_request("next")]), timeout=60)
    assert answer.error_message == "" and answer.infer_response.id == "next"
    assert _sample("googlenet_evaluated_rows_total", model="tiny-0") - evaluated == 1
    assert live.on_loop(lambda: batcher.queued_rows) == 0


def test_a_failed_batch_fails_only_its_own_request_on_the_stream(tmp_path: Path) -> None:
    # The poisoned model fails any batch holding a 255; batches of one row keep the requests apart.
    repo = write_repository(tmp_path / "poisoned", members=1, poison=True)
    white = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(white, format="PNG")
    before = _requests("500", "1x1")
    with serve(repo, max_batch_size=1, instances=1, grpc_port=free_port()) as live:
        with grpc.insecure_channel(live.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            stream = [_request("fine"), _request("poisoned", image=white.getvalue())]
            answers = {a.infer_response.id: a for a in stub.ModelStreamInfer(iter(stream), timeout=60)}
    fine, poisoned = answers["fine"], answers["poisoned"]
    assert poisoned.error_message.startswith("inference failed on model tiny-0")
    assert fine.error_message == "" and fine.infer_response.outputs[0].shape == [1, 1000]
    assert _requests("500", "1x1") - before == 1
