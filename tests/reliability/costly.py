"""Requests that are cheap to send and were expensive to serve (docs/reliability.md, "Cost"), built in
memory: the same attacks the tests and scripts/hostile.py send."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib

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


# Images whose decoding costs far more than their bytes (a second audit; docs/reliability.md, "Cost").


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment; a scan's end includes its entropy-coded data."""
    out, i = [], 2
    while i < len(data) and data[i + 1] != 0xD9:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        end = i + 2 + length
        if marker == 0xDA:  # the scan's data runs to the next marker that is not a stuffed byte or RST
            end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, end).start()
        out.append((marker, i, end))
        i = end
    return out


def progressive_scans(copies: int = 1000, side: int = 4000) -> bytes:
    """A progressive JPEG whose full-band AC refinement scan is repeated `copies` times: each copy
    is ~170 bytes and costs the decoder a pass over every luma coefficient (~10 ms at 16 Mpixel)."""
    data = _encode(smooth(side, side), "JPEG", progressive=True, quality=75)
    scans = [(start, end) for marker, start, end in _segments(data) if marker == 0xDA]
    start, end = max(scans, key=lambda s: _band(data, s[0]) if s[1] - s[0] < 400 else -1)
    return data[:end] + data[start:end] * copies + data[end:]


def _band(data: bytes, sos: int) -> int:
    """How many coefficients per block a scan refines, luma-only scans first."""
    count = data[sos + 4]
    ss, se, ah = data[sos + 5 + 2 * count], data[sos + 6 + 2 * count], data[sos + 7 + 2 * count] >> 4
    return (se - ss + 1) * (2 if ah else 1) * (2 if count == 1 and data[sos + 5] == 1 else 1)


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_marker_flood(size: int = 4 * 2**20, marker: int = 0xFE, payload: bytes = b"") -> bytes:
    """A small JPEG with `size` bytes of tiny segments (COM by default) before its frame."""
    data = _encode(Image.new("RGB", (320, 240), (90, 120, 60)), "JPEG")
    piece = _segment(marker, payload)
    return data[:2] + piece * (size // len(piece)) + data[2:]


def exif_flood(size: int = 4 * 2**20) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_marker_flood(size, 0xE1, b"Exif\0\0" + exif.tobytes())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunk_flood(size: int = 8 * 2**20) -> bytes:
    """A small PNG with `size` bytes of empty ancillary chunks before its image data."""
    data = _encode(Image.new("RGB", (320, 240), (9, 90, 9)), "PNG")
    piece = _chunk(b"tEXt", b"k\0v")
    return data[:33] + piece * (size // len(piece)) + data[33:]


def png_16bit(side: int = 4949) -> bytes:
    """A 16-bit greyscale PNG: ~46 KiB for 4949 x 4949 pixels (49 MB decoded)."""
    y, x = np.mgrid[0:side, 0:side]
    return _encode(Image.fromarray((x // 512 * 4000 + y // 512 * 2000).astype(np.uint16)), "PNG")


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()
