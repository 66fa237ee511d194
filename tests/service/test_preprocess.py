"""Decode, orient, convert and crop: uint8 NHWC crops exactly as the plan says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.crops import crop_plan
from service.errors import ImageTooLarge, InvalidImage
from service.preprocess import crops_from_image, decode, preprocess
from tests.conftest import make_image, sample_jpegs

LIMIT = 50_000_000


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize("crops", [1, 10, 144])
def test_shapes_and_mirrors(crops: int) -> None:
    out = preprocess(make_image(400, 300), crops, max_pixels=LIMIT)
    assert out.shape == (crops, 224, 224, 3) and out.dtype == np.uint8
    if crops > 1:  # every view is followed by its horizontal mirror
        assert np.array_equal(out[1::2], out[0::2, :, ::-1])


def test_crops_are_slices_of_each_scale() -> None:
    image = Image.open(io.BytesIO(make_image(400, 300, fmt="PNG")))
    out = crops_from_image(image, 10)
    plan = crop_plan(400, 300, 10)
    scaled = np.asarray(image.resize(plan[0].size, Image.Resampling.BILINEAR))
    left, top, right, bottom = plan[0].box
    assert np.array_equal(out[0], scaled[top:bottom, left:right])


def test_one_crop_resizing_only_its_region_matches_resize_then_crop() -> None:
    image = Image.open(io.BytesIO(make_image(500, 375, fmt="PNG")))
    fast = crops_from_image(image, 1)[0].astype(int)
    (crop,) = crop_plan(500, 375, 1)
    left, top, right, bottom = crop.box
    slow = np.asarray(image.resize(crop.size, Image.Resampling.BILINEAR))[top:bottom, left:right].astype(int)
    assert np.abs(fast - slow).mean() < 1.0  # same pixels up to resampling at the box edges


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (300, 200), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode(encode(image, "JPEG", exif=exif), max_pixels=LIMIT)
    assert decoded.size == (200, 300)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "1"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    fmt = {"CMYK": "JPEG", "I;16": "PNG", "I": "TIFF"}.get(mode, "PNG")
    image = Image.new("RGB", (260, 260), (200, 100, 50)).convert(mode)
    if mode == "I;16":
        image = Image.fromarray(np.full((260, 260), 40000, np.uint16))
    decoded = decode(encode(image, fmt), max_pixels=LIMIT)
    assert decoded.mode == "RGB" and decoded.size == (260, 260)
    if mode == "I;16":  # 16-bit values are scaled, not clipped at 255
        assert decoded.getpixel((0, 0)) == (156, 156, 156)


@pytest.mark.parametrize(("crops", "shorter"), [(1, 256), (144, 352)])
def test_jpeg_draft_shrinks_large_uploads_but_not_below_the_largest_scale(crops: int, shorter: int) -> None:
    data = make_image(2400, 1800)
    image = decode(data, max_pixels=LIMIT, shorter_side=shorter)
    assert shorter <= min(image.size) < 1800
    assert preprocess(data, crops, max_pixels=LIMIT).shape[0] == crops


def test_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        decode(make_image(400, 300), max_pixels=400 * 300 - 1)


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", make_image()[:300], b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
    ids=["empty", "text", "truncated-jpeg", "corrupt-png"],
)
def test_undecodable_input_is_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        preprocess(data, 1, max_pixels=LIMIT)


def test_real_imagenet_jpegs() -> None:
    for path in sample_jpegs()[:10]:
        out = preprocess(path.read_bytes(), 10, max_pixels=LIMIT)
        assert out.shape == (10, 224, 224, 3) and out.std() > 1
