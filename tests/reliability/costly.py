"""Requests that are cheap to send and were expensive to serve (docs/reliability.md, "Cost"), built in
memory: the same attacks the tests and scripts/hostile.py send."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image


def smooth(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 200 // width, y * 200 // height, (x + y) * 100 // (width + height)], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def mpo(width: int, height: int) -> bytes:
    """A two-picture MPO, what phone cameras write: a JPEG with a second image appended."""
    out = io.BytesIO()
    first = smooth(width, height)
    first.save(out, format="MPO", save_all=True, append_images=[smooth(64, 48)], quality=80)
    return out.getvalue()


def empty_bytes_elements(count: int = 1_000_000) -> bytes:
    """A v2 JSON body of `count` empty BYTES elements (4 MB for a million): cheap to send, slow to parse."""
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": [""] * count}]}
    return json.dumps(doc).encode()


def uint8_values(count: int = 2_000_000, shape: list[int] | None = None) -> bytes:
    """A v2 JSON body of `count` UINT8 values for a tensor model, in a shape the model does not take."""
    data = ",".join(["0"] * count)
    shape = shape or [1, count]
    return f'{{"inputs":[{{"name":"image","datatype":"UINT8","shape":{json.dumps(shape)},"data":[{data}]}}]}}'.encode()
