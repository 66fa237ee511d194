"""gRPC message decoding on its own (service/api/grpc/codec.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from service.api.grpc import codec as grpc_codec
from service.errors import (
    BadRequest,
)


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
        (request(shape=(2**28, 2**28), uint_contents=[1]), "needs"),  # counted, never allocated
        (request(shape=(2**40, 0, 2**40)), "too large"),  # zero elements, but past numpy's index type
        (request("FP32", (2**61, 0)), "too large"),  # past it in bytes, not in elements
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
