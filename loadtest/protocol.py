"""How one classification request looks on the wire: /v1 (raw image body), the KServe v2 protocol
over HTTP with the binary tensor extension, or over gRPC (docs/protocol-v2.md), built once per image
so sending costs nothing."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Literal

from loadtest.mix import Mode

Protocol = Literal["v1", "v2", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("v1", "v2", "grpc")
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def v1_request(image: bytes, mode: Mode) -> Request:
    # topk=1 keeps the answer small: the generator's parsing must not compete with the server for CPU.
    path = f"/v1/classify?crops={mode.crops}&models={mode.models}&topk=1"
    return Request(path, {"Content-Type": "image/jpeg"}, image)


def v2_request(image: bytes, mode: Mode, model: str) -> Request:
    """One BYTES element (4-byte little-endian length, then the JPEG) after the JSON header."""
    blob = struct.pack("<I", len(image)) + image
    header = json.dumps({
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                    "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1, "binary_data": False}}],
        "parameters": {"crops": mode.crops, "models": mode.models},
    }).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return Request(f"/v2/models/{model}/infer", headers, header + blob)


def grpc_request(image: bytes, mode: Mode, model: str) -> Request:
    """A serialized ModelInferRequest: the JPEG as one BYTES element in raw_input_contents, as
    tritonclient.grpc sends it; top-1 by the classification extension, like the v2 request."""
    from tritonclient.grpc import service_pb2 as pb  # only the gRPC protocol needs it

    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 1
    request.parameters["crops"].int64_param = mode.crops
    request.parameters["models"].int64_param = mode.models
    request.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    return Request(GRPC_INFER, {}, request.SerializeToString())


class RequestBook:
    """Every (image, mode) request prepared up front, so the send loop only picks one."""

    def __init__(self, images: list[bytes], modes: tuple[Mode, ...], protocol: Protocol, v2_model: str) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        build = {"v1": v1_request, "v2": lambda image, mode: v2_request(image, mode, v2_model),
                 "grpc": lambda image, mode: grpc_request(image, mode, v2_model)}[protocol]
        self.requests = {mode: [build(image, mode) for image in images] for mode in modes}

    def get(self, mode: Mode, index: int) -> Request:
        choices = self.requests[mode]
        return choices[index % len(choices)]
