"""The cheap structure walk and the decode price (service/image_structure.py, service/decode_cost.py):
floods are refused before Pillow parses them, progressive scans are priced, the bounds hold."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from service.decode_cost import DecodeLimits, DecodeMemory
from service.errors import ImageTooCostly, ServiceError
from service.image_structure import walk
from service.preprocess import load, open_image, preprocess
from tests.reliability import costly

LIMITS = DecodeLimits(1024, 1.0, DecodeMemory(256 * 2**20))
UNBOUNDED = DecodeLimits(10**9, 1e9, DecodeMemory(2**40))


@pytest.mark.parametrize("flood", [costly.jpeg_marker_flood, costly.exif_flood, costly.png_chunk_flood],
                         ids=["jpeg-com", "jpeg-exif", "png-chunks"])
def test_a_metadata_flood_is_refused_by_the_walk_before_pillow_parses_it(flood, monkeypatch) -> None:
    opened = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1))
    with pytest.raises(ImageTooCostly, match="more than 1024"):
        preprocess(flood(64 * 1024), 1, max_pixels=10**8, limits=LIMITS)
    assert opened == []


def test_the_walk_reads_a_progressive_jpeg_s_frame_and_scans() -> None:
    found = walk(costly._encode(costly.smooth(64, 48), "JPEG", progressive=True), 1024)
    assert found.progressive and set(found.sampling) == {1, 2, 3}
    assert len(found.scans) == 10 and {s.band for s in found.scans} >= {1, 63}
    assert not walk(costly._encode(costly.smooth(64, 48), "JPEG"), 1024).progressive


def test_gif_extension_blocks_count_toward_the_limit() -> None:
    data = costly._encode(Image.new("P", (8, 8)), "GIF")
    start = data.index(b"\x2c")
    flooded = data[:start] + b"\x21\xfe" + b"\x01x" * 2000 + b"\x00" + data[start:]
    with pytest.raises(ImageTooCostly, match="GIF extension blocks"):
        walk(flooded, 1024)


def test_repeated_progressive_scans_are_priced_per_scan_and_refused() -> None:
    few, many = costly.progressive_scans(2, 1200), costly.progressive_scans(300, 1200)
    cheap = open_image(few, max_pixels=10**8, limits=UNBOUNDED).cost
    costly_one = open_image(many, max_pixels=10**8, limits=UNBOUNDED).cost
    assert costly_one.cpu_s > 20 * cheap.cpu_s  # a pass over every block per scan, whatever its bytes
    with pytest.raises(ImageTooCostly, match="s of CPU"):
        preprocess(many, 1, max_pixels=10**8, limits=DecodeLimits(1024, cheap.cpu_s * 5, DecodeMemory(2**30)))
    assert preprocess(few, 1, max_pixels=10**8, limits=LIMITS).shape == (1, 224, 224, 3)


def test_a_16_bit_png_is_priced_by_its_bytes_and_refused_past_the_memory_bound() -> None:
    data = costly.png_16bit(1500)
    cost = open_image(data, max_pixels=10**8, limits=UNBOUNDED).cost
    assert cost.bytes >= 1500 * 1500 * 2  # 16 bits per sample, decoded
    with pytest.raises(ImageTooCostly, match="MiB"):
        preprocess(data, 1, max_pixels=10**8, limits=DecodeLimits(1024, 1.0, DecodeMemory(cost.bytes - 1)))
    out = preprocess(data, 1, max_pixels=10**8, limits=LIMITS)
    assert out.shape == (1, 224, 224, 3) and (out[..., 0] == out[..., 2]).all()  # grey fills all three bands


def test_a_decode_past_its_cpu_bound_is_stopped() -> None:
    rng = np.random.default_rng(0)
    data = costly._encode(Image.fromarray(rng.integers(0, 255, (1500, 1500, 3), dtype=np.uint8)), "PNG")
    opened = open_image(data, max_pixels=10**8, limits=UNBOUNDED)  # priced as cheap; bounded while it runs
    with pytest.raises(ImageTooCostly, match="took more than"):
        load(opened, DecodeLimits(1024, 1e-6, DecodeMemory(2**30)))


def test_decodes_wait_for_memory_room_and_never_hold_more_than_the_bound() -> None:
    memory, peak = DecodeMemory(100), [0]

    def decode(size: int, release: threading.Event) -> None:
        with memory.hold(size):
            peak[0] = max(peak[0], memory.held)
            release.wait(5)

    first, second = threading.Event(), threading.Event()
    a = threading.Thread(target=decode, args=(70, first))
    b = threading.Thread(target=decode, args=(70, second))
    a.start()
    b.start()
    second.set()
    first.set()
    a.join(5)
    b.join(5)
    assert peak[0] == 70 and memory.held == 0


def test_a_frame_with_zero_sampling_factors_is_priced_not_crashed() -> None:
    # A fuzz find: hv = 0 in the frame header divided by zero in the block count.
    data = costly._encode(costly.smooth(64, 48), "JPEG", progressive=True)
    sof = data.index(b"\xff\xc2")
    frame = bytearray(data[sof : sof + 2 + int.from_bytes(data[sof + 2 : sof + 4], "big")])
    frame[11] = frame[14] = frame[17] = 0  # every sampling factor, in a second frame header after the scans
    try:
        preprocess(data[:-2] + bytes(frame) + data[-2:], 1, max_pixels=10**8, limits=LIMITS)
    except ServiceError as exc:
        assert exc.status == 422
