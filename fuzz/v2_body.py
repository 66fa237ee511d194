"""Fuzz target: Open Inference Protocol bodies (JSON, binary tensor data, raw binary) -> tensors
(service/api/v2/codec.py). The first byte picks how Inference-Header-Content-Length is set; mode 3
parses against a model (shapes and batch checked before any data, JSON values bounded), and what
it accepts must hold what that model takes."""

from __future__ import annotations

import json
import struct

import atheris

with atheris.instrument_imports(include=["service"]):
    from service.api.v2 import codec as v2_codec
    from service.api.v2 import infer as v2_infer
    from service.api.v2.catalog import V2Model

from fuzz.harness import fuzz, refused_by_the_service

MAX_IMAGES = 4
MODELS = [V2Model("m", "1", ("m",), encoded, ensemble=False) for encoded in (True, False)]


def seeds() -> list[bytes]:
    image = b"\xff\xd8\xff\xe0fake jpeg"
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1],
                       "parameters": {"binary_data_size": len(image) + 4}}],
           "outputs": [{"name": "probabilities", "parameters": {"classification": 5, "binary_data": True}}],
           "parameters": {"crops": 10, "binary_data_output": True}, "id": "x"}
    header = json.dumps(doc).encode()
    tensor = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [[1, 2, 3]] * 4}]}
    fp = {"inputs": [{"name": "x", "datatype": "FP16", "shape": [2], "data": [1.5, 1e9]}]}
    many = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [300], "data": [""] * 300}]}
    wrong = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 12], "data": [0] * 12}]}
    return [b"\x01" + header + struct.pack("<I", len(image)) + image, b"\x00" + json.dumps(tensor).encode(),
            b"\x00" + json.dumps(fp).encode(), b"\x02" + bytes(range(12)),
            b"\x03" + json.dumps(many).encode(), b"\x03" + json.dumps(wrong).encode()]


def _against_a_model(body: bytes) -> None:
    for model in MODELS:
        check = v2_infer.input_check(model, MAX_IMAGES)
        try:
            parsed = v2_codec.parse_request(body, None, check=check,
                                            max_values=v2_infer.max_values(model, MAX_IMAGES))
        except Exception as exc:
            if refused_by_the_service(exc):
                continue
            raise
        for tensor in parsed.inputs:  # accepted: every input passed the model's check
            check(tensor.name, tensor.datatype, tensor.shape)
            assert tensor.data.size <= v2_infer.max_values(model, MAX_IMAGES)


def test_one(data: bytes) -> None:
    mode, body = data[:1], data[1:]
    if mode == b"\x03":
        _against_a_model(body)
        return
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
