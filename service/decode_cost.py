"""What decoding an image costs, priced from its header before any pixel is decoded, and the bounds
on it: CPU seconds per image, bytes of decoded images held at once, and CPU time while it decodes.

The price is an upper estimate from the format, the decoded size (after JPEG's DCT scaling), the
bit depth, and for a progressive JPEG every scan over the blocks it codes: libjpeg passes over the
whole image once per scan, so 1,000 tiny scans in 157 KiB cost ~10 s of a core at 16 Mpixel.
Only the first frame of an animation or multi-page file is decoded, so other frames cost nothing.
Constants are ns measured on one x86-64 core with Pillow 13 (docs/reliability.md, "Cost"), rounded up.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from service.errors import ImageTooCostly
from service.image_structure import Structure

NS = 1e-9
_JPEG_BYTE_NS = {False: 10, True: 40}  # entropy decoding per compressed byte: baseline, progressive
_SCAN_UNIT_NS = 0.7  # a progressive scan, per block x (coefficients it codes + 1)
_PIXEL_NS = {"PNG": 6, "GIF": 8, "WEBP": 40, "BMP": 3, "TIFF": 12}  # per decoded byte (PNG) or pixel
_OUTPUT_BYTE_NS = 6  # colour conversion, upsampling, orientation and the crops' resize, per decoded byte
# Bytes per pixel of each mode Pillow decodes to; what `preprocess._to_rgb` then makes of it (bytes per pixel).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2,
               "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}
_CONVERTED = {"L": 0, "RGB": 0, "I;16": 3, "I;16B": 3, "I;16L": 3, "I;16N": 3, "I": 9, "F": 9}  # else 3 (RGB)


@dataclass(frozen=True)
class DecodeCost:
    cpu_s: float  # estimated CPU seconds to decode, orient, convert and crop
    bytes: int  # estimated peak bytes the decode holds
    what: str  # how it was priced, for the refusal message


def price(image: Image.Image, structure: Structure, size: int, full: tuple[int, int]) -> DecodeCost:
    """Price an opened image of `size` bytes whose frame is `full` (width, height); after `draft`,
    `image.size` is what will be decoded."""
    width, height = image.size
    pixels = width * height
    decoded = pixels * _MODE_BYTES.get(image.mode, 4)
    fmt = image.format or ""
    work = decoded * _OUTPUT_BYTE_NS
    extra = 0
    what = f"{width}x{height} {image.mode} {fmt}"
    if fmt in ("JPEG", "MPO"):
        work += size * _JPEG_BYTE_NS[structure.progressive]
        if structure.progressive:  # libjpeg buffers every coefficient (2 bytes each) at full size
            blocks = _blocks(full, structure)
            extra = 128 * sum(blocks.values())
            work += _SCAN_UNIT_NS * sum(blocks.get(c, 0) * (s.band + 1) for s in structure.scans for c in s.components)
            what += f", progressive, {len(structure.scans)} scans"
    elif fmt == "PNG":
        work += decoded * _PIXEL_NS["PNG"] * (1.5 if structure.interlaced else 1)
    else:
        work += pixels * _PIXEL_NS.get(fmt, 40)
    converted = pixels * _CONVERTED.get(image.mode, 3)
    # Decoded image + one working copy (orientation) or the conversion's output, whichever is larger.
    return DecodeCost(work * NS, decoded + extra + max(decoded, converted), what)


def _blocks(full: tuple[int, int], structure: Structure) -> dict[int, int]:
    """8x8 blocks of each component at full resolution (the frame's, not the draft's)."""
    width, height = full
    sampling = structure.sampling or {1: (1, 1)}
    hmax = max(h for h, _ in sampling.values())
    vmax = max(v for _, v in sampling.values())
    return {
        c: math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8)
        for c, (h, v) in sampling.items()
    }


class DecodeTooSlow(Exception):
    """The decode ran past its CPU bound (checked between the blocks Pillow feeds the decoder)."""


class GuardedBytes(io.BytesIO):
    """The file Pillow reads: once armed, each read checks the reading thread's CPU time."""

    _limit_s: float | None = None
    _start = 0.0

    def arm(self, limit_s: float) -> None:
        self._limit_s, self._start = limit_s, time.thread_time()

    def read(self, size: int | None = -1) -> bytes:
        if self._limit_s is not None and time.thread_time() - self._start > self._limit_s:
            raise DecodeTooSlow
        return super().read(size)


class DecodeMemory:
    """Bytes of images being decoded at once, bounded: a decode waits for room (the pool's few threads
    are the queue); one that could never fit was refused when priced."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self._room = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._room:
            self._room.wait_for(lambda: self.held == 0 or self.held + size <= self.limit)
            self.held += size
        try:
            yield
        finally:
            with self._room:
                self.held -= size
                self._room.notify_all()


@dataclass(frozen=True)
class DecodeLimits:
    max_segments: int
    max_cpu_s: float
    memory: DecodeMemory

    def check(self, cost: DecodeCost) -> None:
        if cost.cpu_s > self.max_cpu_s:
            raise ImageTooCostly(
                f"decoding this image ({cost.what}) would take about {cost.cpu_s:.1f} s of CPU, more than the "
                f"limit of {self.max_cpu_s:g} s: send a smaller image (or a baseline JPEG)"
            )
        if cost.bytes > self.memory.limit:
            raise ImageTooCostly(
                f"decoding this image ({cost.what}) would hold about {cost.bytes / 2**20:.0f} MiB, more than the "
                f"limit of {self.memory.limit / 2**20:.0f} MiB: send a smaller image or fewer bits per sample"
            )
