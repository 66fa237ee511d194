"""The gRPC server live (service/api/grpc/server.py): one batch for gRPC and HTTP rows, UNAVAILABLE
with retry info when the queue is full, request metrics, and the drain of in-flight calls at shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from loadtest.servers import free_port
from tests.conftest import LiveServer, make_image, serve


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    # Batches of 2 rows that wait up to 10 s for a second row: two requests share one batch.
    with serve(tiny_repo, models=1, max_batch_size=2, instances=1, max_queue_delay_ms=10_000,
               grpc_port=free_port()) as server:
        yield server


def _stub(live: LiveServer) -> tuple[grpc.Channel, service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(live.grpc_target)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _scalar(live: LiveServer, name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0  # the server runs in this process


def _jpeg_request() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="tiny-0")
    message.inputs.add(name="image", datatype="BYTES", shape=[1, 1])
    jpeg = make_image()
    message.raw_input_contents.append(len(jpeg).to_bytes(4, "little") + jpeg)
    return message


def test_a_grpc_and_an_http_request_share_one_batch(live: LiveServer) -> None:
    batches = _scalar(live, "googlenet_batches_total", model="tiny-0", outcome="ok")
    channel, stub = _stub(live)
    answers: dict[str, object] = {}
    grpc_call = threading.Thread(target=lambda: answers.update(grpc=stub.ModelInfer(_jpeg_request(), timeout=60)))
    grpc_call.start()
    http = httpx.post(f"{live.url}/v1/classify", content=make_image(seed=1), headers={"content-type": "image/jpeg"},
                      timeout=60)
    grpc_call.join(60)
    channel.close()
    assert http.status_code == 200 and answers["grpc"].outputs[0].shape == [1, 1000]
    # Each request alone would wait out the 10-s delay in its own batch: one batch of 2 rows it is.
    assert _scalar(live, "googlenet_batches_total", model="tiny-0", outcome="ok") - batches == 1
    route = "/inference.GRPCInferenceService/ModelInfer"
    assert _scalar(live, "googlenet_requests_total", route=route, status="200", mode="1x1") >= 1


def test_a_full_queue_is_unavailable_with_retry_info(live: LiveServer) -> None:
    primary = live.app.state.serving.classifier.ensemble.queues["tiny-0"]
    channel, stub = _stub(live)
    live.on_loop(primary.reserve, primary.max_queue_rows)  # the queue is full of requests still decoding
    try:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(_jpeg_request(), timeout=30)
    finally:
        live.on_loop(primary.release, primary.max_queue_rows)
        channel.close()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(refused.value.trailing_metadata())["retry-after"] == "1"


def test_shutdown_lets_an_in_flight_call_finish(tiny_repo: Path) -> None:
    server = serve(tiny_repo, models=1, max_batch_size=2, instances=1, max_queue_delay_ms=2_000,
                   grpc_port=free_port()).__enter__()
    channel, stub = _stub(server)
    try:
        pending = stub.ModelInfer.future(_jpeg_request(), timeout=60)  # waits in a batch of 1 for 2 s
        deadline = time.monotonic() + 30
        while _scalar(server, "googlenet_queue_rows", model="tiny-0") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the call is admitted: it is in flight
    finally:
        server.__exit__(None, None, None)  # readiness false, no new calls, in-flight ones finish
    assert pending.result().outputs[0].name == "probabilities"
    with pytest.raises(grpc.RpcError) as closed:
        stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
