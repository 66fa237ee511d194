"""loadtest/protocol.py: one classification request per protocol, as the service parses it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from loadtest.mix import Mode
from loadtest.protocol import GRPC_INFER, PROTOCOLS, RequestBook, grpc_request, v1_request, v2_request
from loadtest.servers import free_port
from service.api.grpc.codec import parse_infer
from service.api.v2.codec import parse_request
from tests.conftest import make_image, serve

JPEG = make_image(64, 48)
MODE = Mode(10, 2)


def test_a_v1_request_is_the_raw_image_asking_for_top_1() -> None:
    request = v1_request(JPEG, MODE)
    assert request.path == "/v1/classify?crops=10&models=2&topk=1"
    assert request.headers == {"Content-Type": "image/jpeg"} and request.body == JPEG


def test_a_v2_request_parses_as_one_bytes_element_with_the_mode() -> None:
    request = v2_request(JPEG, MODE, "googlenet")
    assert request.path == "/v2/models/googlenet/infer"
    assert request.headers["Content-Type"] == "application/octet-stream"
    parsed = parse_request(request.body, request.headers["Inference-Header-Content-Length"])
    (image,) = parsed.inputs
    assert (image.name, image.datatype, image.shape, image.binary) == ("image", "BYTES", (1,), True)
    assert image.data[0] == JPEG
    assert parsed.parameters == {"crops": 10, "models": 2}
    (out,) = parsed.outputs
    assert (out.name, out.binary, out.classification) == ("probabilities", False, 1)


def test_a_grpc_request_parses_as_tritonclient_would_send_it() -> None:
    request = grpc_request(JPEG, MODE, "tiny")
    assert request.path == GRPC_INFER and request.headers == {}
    message = pb.ModelInferRequest.FromString(request.body)
    assert message.model_name == "tiny"
    parsed = parse_infer(message)
    (image,) = parsed.inputs
    assert (image.datatype, image.shape, image.data[0]) == ("BYTES", (1,), JPEG)
    assert parsed.parameters == {"crops": 10, "models": 2}
    assert [(o.name, o.classification) for o in parsed.outputs] == [("probabilities", 1)]


def test_the_book_builds_every_image_and_mode_once() -> None:
    images, modes = [b"a", b"b", b"c"], (Mode(1, 1), Mode(144, 7))
    book = RequestBook(images, modes, "v1", "unused")
    assert {m: [r.body for r in rs] for m, rs in book.requests.items()} == {m: images for m in modes}
    assert book.get(Mode(144, 7), 1).path == "/v1/classify?crops=144&models=7&topk=1"
    assert book.get(Mode(1, 1), 0) is book.get(Mode(1, 1), 0)  # prepared, not rebuilt per send


def test_the_book_cycles_through_the_images() -> None:
    book = RequestBook([b"a", b"b"], (Mode(1, 1),), "v2", "m")
    bodies = [book.get(Mode(1, 1), i).body for i in range(4)]
    assert [body[-1:] for body in bodies] == [b"a", b"b", b"a", b"b"]


def test_the_book_names_its_model_for_v2_and_grpc() -> None:
    v2_book = RequestBook([b"a"], (Mode(1, 1),), "v2", "tiny-0")
    assert v2_book.get(Mode(1, 1), 0).path == "/v2/models/tiny-0/infer"
    grpc_book = RequestBook([b"a"], (Mode(1, 1),), "grpc", "tiny-0")
    assert pb.ModelInferRequest.FromString(grpc_book.get(Mode(1, 1), 0).body).model_name == "tiny-0"


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match=r"protocol must be one of \('v1', 'v2', 'grpc'\), got 'v3'"):
        RequestBook([b"a"], (Mode(1, 1),), "v3", "m")  # type: ignore[arg-type]


def test_every_protocol_gets_an_answer_from_the_service(tiny_repo: Path) -> None:
    mode = Mode(1, 2)
    books = {p: RequestBook([JPEG], (mode,), p, "tiny") for p in PROTOCOLS}
    with serve(tiny_repo, models=2, instances=1, grpc_port=free_port()) as live:
        with live.client() as client:
            for protocol in ("v1", "v2"):
                request = books[protocol].get(mode, 0)
                answer = client.post(request.path, content=request.body, headers=request.headers)
                assert answer.status_code == 200, (protocol, answer.text)
        with grpc.insecure_channel(live.grpc_target) as channel:
            call = channel.unary_unary(GRPC_INFER, response_deserializer=pb.ModelInferResponse.FromString)
            response = call(books["grpc"].get(mode, 0).body, timeout=30)
    assert response.model_name == "tiny" and response.outputs[0].datatype == "BYTES"
    assert list(response.outputs[0].shape) == [1, 1]  # top-1 by the classification extension
