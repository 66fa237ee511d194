"""How one classification request looks on the wire: /v1 (raw image body) or the KServe v2 protocol
with the binary tensor extension (docs/protocol-v2.md), built once per image so sending costs nothing."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Literal

from loadtest.mix import Mode

Protocol = Literal["v1", "v2"]
PROTOCOLS: tuple[Protocol, ...] = ("v1", "v2")


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


class RequestBook:
    """Every (image, mode) request prepared up front, so the send loop only picks one."""

    def __init__(self, images: list[bytes], modes: tuple[Mode, ...], protocol: Protocol, v2_model: str) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        build = v1_request if protocol == "v1" else (lambda image, mode: v2_request(image, mode, v2_model))
        self.requests = {mode: [build(image, mode) for image in images] for mode in modes}

    def get(self, mode: Mode, index: int) -> Request:
        choices = self.requests[mode]
        return choices[index % len(choices)]
