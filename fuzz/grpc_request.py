"""Fuzz target: gRPC ModelInferRequest bytes -> tensors (service/api/grpc/codec.py), the path a
ModelInfer or ModelStreamInfer message takes before any model runs. A message that does not parse
must come out as MALFORMED (the servicer's INVALID_ARGUMENT), never as an exception."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["service"]):
    from tritonclient.grpc import service_pb2 as pb

    from service.api.grpc import codec as grpc_codec

from fuzz.harness import fuzz, refused_by_the_service

_PARSE = grpc_codec.lenient(pb.ModelInferRequest)


def seeds() -> list[bytes]:
    image = b"\xff\xd8\xff\xe0fake jpeg"
    encoded = pb.ModelInferRequest(model_name="tiny", id="x")
    encoded.inputs.add(name="image", datatype="BYTES", shape=[1, 1])
    encoded.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    encoded.parameters["crops"].int64_param = 10
    encoded.outputs.add(name="probabilities").parameters["classification"].int64_param = 5
    typed = pb.ModelInferRequest(model_name="tiny-tensor")
    typed.inputs.add(name="image", datatype="UINT8", shape=[1, 2, 2, 3]).contents.uint_contents.extend(range(12))
    floats = pb.ModelInferRequest(model_name="x")
    floats.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1.5, 1e9])
    floats.parameters["t"].double_param = 0.5
    return [m.SerializeToString() for m in (encoded, typed, floats)]


def test_one(data: bytes) -> None:
    message = _PARSE(data)
    if message is grpc_codec.MALFORMED:
        return
    try:
        grpc_codec.parse_infer(message)
    except Exception as exc:
        if refused_by_the_service(exc):
            return
        raise


if __name__ == "__main__":
    fuzz(test_one, seeds)
