"""Fuzz target: Open Inference Protocol bodies (JSON, binary tensor data, raw binary) -> tensors
(service/api/v2_codec.py). The first byte picks how Inference-Header-Content-Length is set."""

from __future__ import annotations

import json
import struct

import atheris

with atheris.instrument_imports(include=["service"]):
    from service.api import v2_codec

from fuzz.harness import fuzz, refused_by_the_service


def seeds() -> list[bytes]:
    image = b"\xff\xd8\xff\xe0fake jpeg"
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1],
                       "parameters": {"binary_data_size": len(image) + 4}}],
           "outputs": [{"name": "probabilities", "parameters": {"classification": 5, "binary_data": True}}],
           "parameters": {"crops": 10, "binary_data_output": True}, "id": "x"}
    header = json.dumps(doc).encode()
    tensor = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [[1, 2, 3]] * 4}]}
    fp = {"inputs": [{"name": "x", "datatype": "FP16", "shape": [2], "data": [1.5, 1e9]}]}
    return [b"\x01" + header + struct.pack("<I", len(image)) + image, b"\x00" + json.dumps(tensor).encode(),
            b"\x00" + json.dumps(fp).encode(), b"\x02" + bytes(range(12))]


def test_one(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    try:
        if mode == b"\x02":  # Triton's raw binary request: the body is one batch item
            v2_codec.raw_request(body, "image", "UINT8", (2, 2, 3))
            v2_codec.raw_request(body, "image", "BYTES", (1,))
        else:
            header = None if mode == b"\x00" else str(body.find(b"}") + 1) if mode == b"\x01" else mode.hex()
            v2_codec.parse_request(body, header)
    except Exception as exc:
        if refused_by_the_service(exc):
            return
        raise


if __name__ == "__main__":
    fuzz(test_one, seeds)
