"""Decode, orient, convert and crop: uint8 NHWC crops exactly as the plan says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.crops import crop_plan, nested_plan
from service.errors import ImageTooLarge, InvalidImage
from service.preprocess import ImageCrops, crops_from_image, decode, preprocess
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


@pytest.mark.parametrize(("width", "height"), [(360, 270), (250, 330), (900, 200)])
def test_a_walk_makes_each_protocols_crops_rung_by_rung(width: int, height: int) -> None:
    data = make_image(width, height)
    walk = ImageCrops(data, 144, nested=True, max_pixels=10**8)
    rows = np.concatenate([walk.rows(0, 1), walk.rows(1, 10), walk.rows(10, 144)])  # made as a walk makes them
    fixed = preprocess(data, 144, max_pixels=10**8)
    order = [crop_plan(*decode(data, max_pixels=10**8, shorter_side=352).size, 144).index(c)
             for c in nested_plan(*decode(data, max_pixels=10**8, shorter_side=352).size)]
    np.testing.assert_array_equal(rows, fixed[order])  # the 144 protocol's pixels, in the nested order
    ten = preprocess(data, 10, max_pixels=10**8)
    assert sorted(r.tobytes() for r in rows[:10]) == sorted(r.tobytes() for r in ten)  # its first 10: the 10's


@pytest.mark.parametrize("crops", [1, 10, 144])
def test_a_walk_that_keeps_its_crops_makes_the_protocols_own(crops: int) -> None:
    data = make_image(410, 300)
    np.testing.assert_array_equal(ImageCrops(data, crops, nested=False, max_pixels=10**8).rows(0, crops),
                                  preprocess(data, crops, max_pixels=10**8))
