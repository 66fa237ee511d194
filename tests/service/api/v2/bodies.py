"""Bodies of the v2 binary extension, built by hand: what the codec and endpoint tests send."""

from __future__ import annotations

import json
import struct

HEADER = "Inference-Header-Content-Length"


def element(data: bytes) -> bytes:
    """One BYTES element of the binary extension: 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(data)) + data


def binary_body(doc: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(doc).encode()
    return header + b"".join(blobs), {HEADER: str(len(header)), "content-type": "application/octet-stream"}


def image_request(data: bytes, *, size: int | None = None, **params: object) -> tuple[bytes, dict[str, str]]:
    blob = element(data)
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": len(blob) if size is None else size},
            }
        ],
        "parameters": params,
    }
    return binary_body(doc, blob)
