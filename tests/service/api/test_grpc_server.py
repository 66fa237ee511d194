"""The gRPC API below the clients: message decoding (service/api/grpc_codec.py), the error table,
and the live server: one batch for gRPC and HTTP rows, UNAVAILABLE with retry info when the queue
is full, request metrics, and the drain of in-flight calls at shutdown."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from service.api import grpc_codec
from service.api.grpc_status import status_code, trailers
from service.errors import (
    BadRequest, DeadlineExceeded, ImageTooLarge, InferenceFailed, InvalidImage, NotFound, NotReady, Overloaded,
    PayloadTooLarge, Unauthorized,
)
from tests.conftest import LiveServer, free_port, make_image, serve


def request(datatype: str = "UINT8", shape: tuple[int, ...] = (1, 2), **contents: list) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="tiny-tensor")
    tensor = message.inputs.add(name="image", datatype=datatype, shape=list(shape))
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return message


def test_typed_contents_and_raw_contents_give_the_same_tensor() -> None:
    typed = grpc_codec.parse_infer(request(uint_contents=[3, 255]))
    raw = request()
    raw.raw_input_contents.append(bytes([3, 255]))
    for parsed in (typed, grpc_codec.parse_infer(raw)):
        (tensor,) = parsed.inputs
        assert tensor.data.dtype == np.uint8 and tensor.data.tolist() == [[3, 255]] and tensor.binary
    fp = grpc_codec.parse_infer(request("FP32", (2,), fp32_contents=[1.5, -2]))
    assert fp.inputs[0].data.tolist() == [1.5, -2]
    text = grpc_codec.parse_infer(request("BYTES", (1, 1), bytes_contents=[b"\xff\xd8"]))
    assert text.inputs[0].data[0, 0] == b"\xff\xd8"


def test_parameters_and_outputs() -> None:
    message = request(uint_contents=[1, 2])
    message.id = "r1"
    message.parameters["crops"].int64_param = 10
    message.parameters["flag"].bool_param = True
    message.parameters["name"].string_param = "x"
    message.outputs.add(name="probabilities").parameters["classification"].int64_param = 3
    parsed = grpc_codec.parse_infer(message)
    assert parsed.parameters == {"crops": 10, "flag": True, "name": "x"} and parsed.id == "r1"
    assert [(o.name, o.classification) for o in parsed.outputs] == [("probabilities", 3)]


def _raw(n: int, blob: bytes) -> pb.ModelInferRequest:
    message = request("BYTES", (n,))
    message.raw_input_contents.append(blob)
    return message


def _nan_parameter() -> pb.ModelInferRequest:
    message = request(uint_contents=[1, 2])
    message.parameters["timeout"].double_param = math.nan
    return message


def _both() -> pb.ModelInferRequest:
    message = request(uint_contents=[1, 2])
    message.raw_input_contents.append(b"\0\0")
    return message


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (pb.ModelInferRequest(model_name="tiny"), "non-empty"),
        (request(uint_contents=[1]), "needs 2 elements"),
        (request(uint_contents=[1, 256]), "out of the range"),
        (request(int_contents=[1, 2]), "goes in contents.uint_contents"),
        (request("FP16", (1,), fp32_contents=[1.0]), "raw_input_contents"),
        (request("INT4", (1,)), "datatype"),
        (request(shape=(1, -2)), "non-negative"),
        (request(shape=(1,) * 9), "at most 8"),
        (request(shape=(2**40, 2**40), uint_contents=[1]), "needs"),  # counted, never allocated
        (_raw(2**31, b"\0" * 8), "need at least"),
        (_raw(1, b"\x09\0\0\0abc"), "declares 9 bytes"),
        (_nan_parameter(), "finite"),
        (_both(), "both"),
    ],
)
def test_malformed_requests_are_bad_requests(message: pb.ModelInferRequest, error: str) -> None:
    with pytest.raises(BadRequest, match=error):
        grpc_codec.parse_infer(message)


def test_a_message_that_does_not_parse_is_marked_not_raised() -> None:
    parse = grpc_codec.lenient(pb.ModelInferRequest)
    assert parse(b"\xff\xff\xff") is grpc_codec.MALFORMED
    assert parse(pb.ModelInferRequest(model_name="x").SerializeToString()).model_name == "x"


def test_every_service_error_has_the_code_triton_gives_it() -> None:
    table = {
        BadRequest: "INVALID_ARGUMENT", InvalidImage: "INVALID_ARGUMENT", NotFound: "NOT_FOUND",
        PayloadTooLarge: "RESOURCE_EXHAUSTED", ImageTooLarge: "RESOURCE_EXHAUSTED", Unauthorized: "UNAUTHENTICATED",
        NotReady: "UNAVAILABLE", DeadlineExceeded: "DEADLINE_EXCEEDED", InferenceFailed: "INTERNAL",
    }
    for error, code in table.items():
        assert status_code(error("x")).name == code, error
    full = Overloaded("full", retry_after_s=2)
    assert status_code(full) == grpc.StatusCode.UNAVAILABLE
    assert dict(trailers(full)) == {"retry-after": "2", "grpc-retry-pushback-ms": "2000"}


# --- the live server -------------------------------------------------------------------------------


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
    primary = live.app.state.serving.classifier.scheduler.batchers["tiny-0"]
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
