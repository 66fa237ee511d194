"""Image bytes -> uint8 NHWC crops [k, 224, 224, 3]: decode, orient, to RGB, resize, crop.

Runs in a worker thread (never on the event loop). Normalisation is not here: it lives in
the ONNX graph (design.md 2), so the crops stay uint8 all the way to the model.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from service.crops import CROP, Crop, crop_plan, largest_scale, scaled_size
from service.errors import ImageTooLarge, InvalidImage

# Our own pixel limit is checked on the header before decoding; PIL's would only warn.
Image.MAX_IMAGE_PIXELS = None
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_RESAMPLE = Image.Resampling.BILINEAR
# Up to 3:1 a whole scale costs no more than its three squares (the 144-crop protocol's).
WHOLE_SCALE_MAX_ASPECT = 3


def decode(
    data: bytes, *, max_pixels: int, shorter_side: int = 256, max_aspect: float | None = None
) -> Image.Image:
    """Decode to an upright RGB image, letting JPEG's DCT scaling shrink it while its shorter side
    stays >= `shorter_side` (a 12-Mpixel upload decodes 7-9x faster; design.md 5). The size and
    the aspect ratio are checked on the header, before any pixel is decoded."""
    if not data:
        raise InvalidImage("the image is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(f"not a decodable image in a supported format ({', '.join(FORMATS)})") from None
    except Exception as exc:  # PIL raises many types on hostile headers
        raise InvalidImage(f"cannot read the image header: {exc.__class__.__name__}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image has {width}x{height} pixels, more than the limit of {max_pixels}")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        # A 1 x 300 strip has no square to crop from: every view would be one pixel blown up (issue 12).
        raise InvalidImage(
            f"the image is {width}x{height}, an aspect ratio over the limit of {max_aspect:g}:1; no crop of it"
            " would show the picture"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncated-file and EXIF warnings become errors below
            if isinstance(image, JpegImageFile):  # MPO (what phones write) is a JPEG subclass: draft applies
                image.draft("RGB", scaled_size(width, height, shorter_side))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # a copy of every upright image otherwise
            return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"cannot decode the image: {exc.__class__.__name__}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: keep the top 8 bits; convert("L") would clip at 255 instead.
        pixels = np.asarray(image, dtype=np.uint32) >> 8
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def crops_from_image(image: Image.Image, crops: int) -> np.ndarray:
    """Apply the crop plan of `crops` crops: uint8 [crops, 224, 224, 3]."""
    plan = crop_plan(image.width, image.height, crops)
    out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)  # k x 224 x 224 x 3
    fill_crops(image, plan, out)
    return out


def scale_groups(plan: list[Crop]) -> list[slice]:
    """The plan's runs of crops taken at one scale: independent work, for several threads."""
    groups, start = [], 0
    for i in range(1, len(plan) + 1):
        if i == len(plan) or plan[i].size != plan[start].size:
            groups.append(slice(start, i))
            start = i
    return groups


def fill_crops(image: Image.Image, plan: list[Crop], out: np.ndarray) -> None:
    """Write the crop `plan[i]` into `out[i]`; each view is made once, its mirror is a slice.

    At an ordinary aspect ratio each scale is resized once, and it and its left-right flip are
    sliced: every crop is then a copy of 224 contiguous rows (a mirrored numpy view would copy
    pixel by pixel, most of the 144 crops' time). Past `WHOLE_SCALE_MAX_ASPECT` each view is
    resized straight from the source region it covers instead: a whole scale of a 1 x 300 image
    at shorter side 352 would be 352 x 105,600 pixels, a decompression bomb in a 74-byte PNG
    (docs/reliability.md). A single crop always takes the region path.
    """
    whole_scales = len(plan) > 1 and max(image.size) <= WHOLE_SCALE_MAX_ASPECT * min(image.size)
    scaled: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # size -> (scale, its mirror)
    views: dict[tuple[tuple[int, int], tuple[int, int, int, int]], np.ndarray] = {}
    for i, crop in enumerate(plan):
        if whole_scales and not crop.needs_resize:
            out[i] = _slice_of_scale(image, crop, scaled)
            continue
        view = views.get((crop.size, crop.box))
        if view is None:
            view = _resize_view(image, crop, scaled) if whole_scales else _resize_box(image, crop)
            views[crop.size, crop.box] = view
        out[i] = view[:, ::-1] if crop.mirror else view


def _scale(image: Image.Image, size: tuple[int, int], scaled: dict) -> tuple[np.ndarray, np.ndarray]:
    if size not in scaled:
        resized = image.resize(size, _RESAMPLE)
        scaled[size] = (np.asarray(resized), np.asarray(resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return scaled[size]


def _slice_of_scale(image: Image.Image, crop: Crop, scaled: dict) -> np.ndarray:
    plain, mirrored = _scale(image, crop.size, scaled)
    left, top, right, bottom = crop.box
    if crop.mirror:  # the mirror of a box is the mirrored box of the flipped scale
        width = crop.size[0]
        return mirrored[top:bottom, width - right : width - left]
    return plain[top:bottom, left:right]


def _resize_view(image: Image.Image, crop: Crop, scaled: dict) -> np.ndarray:
    # The paper's "whole square resized to 224", from the scale it was cut at.
    left, top, right, bottom = crop.box
    square = _scale(image, crop.size, scaled)[0][top:bottom, left:right]
    return np.asarray(Image.fromarray(square).resize((CROP, CROP), _RESAMPLE))


def _resize_box(image: Image.Image, crop: Crop) -> np.ndarray:
    # Resize only the source region that becomes the crop (design.md 5): the pixels of resizing the
    # whole scale and slicing, up to resampling at the edges, for a cost bounded by the crop's size.
    sx, sy = image.width / crop.size[0], image.height / crop.size[1]
    left, top, right, bottom = crop.box
    box = (left * sx, top * sy, right * sx, bottom * sy)
    return np.asarray(image.resize((CROP, CROP), _RESAMPLE, box=box))


def preprocess(data: bytes, crops: int, *, max_pixels: int, max_aspect: float | None = None) -> np.ndarray:
    """Encoded image -> uint8 [k, 224, 224, 3] with k = `crops` (1, 10 or 144)."""
    image = decode(data, max_pixels=max_pixels, shorter_side=largest_scale(crops), max_aspect=max_aspect)
    return crops_from_image(image, crops)
