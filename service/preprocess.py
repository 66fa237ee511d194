"""Image bytes -> uint8 NHWC crops [k, 224, 224, 3]: decode, orient, to RGB, resize, crop.

Runs in a worker thread (never on the event loop). Normalisation is not here: it lives in
the ONNX graph (docs/architecture.md 2), so the crops stay uint8 all the way to the model.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from service.crops import CROP, Crop, crop_plan, largest_scale, nested_plan, scaled_size
from service.decode_cost import DecodeCost, DecodeLimits, DecodeTooSlow, GuardedBytes, price
from service.errors import ImageTooCostly, ImageTooLarge, InvalidImage
from service.image_structure import Structure, walk

# Our own pixel limit is checked on the header before decoding; PIL's would only warn.
Image.MAX_IMAGE_PIXELS = None
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_RESAMPLE = Image.Resampling.BILINEAR
# Up to 3:1 a whole scale costs no more than its three squares (the 144-crop protocol's).
WHOLE_SCALE_MAX_ASPECT = 3
_BLOCK = 16 * 1024  # bytes Pillow feeds the decoder at a time: how often the CPU bound is checked


@dataclass(frozen=True)
class Opened:
    """An image whose header was read, checked and priced; no pixel decoded yet."""

    image: Image.Image
    file: GuardedBytes
    cost: DecodeCost


def open_image(
    data: bytes, *, max_pixels: int, shorter_side: int = 256, max_aspect: float | None = None,
    limits: DecodeLimits | None = None,
) -> Opened:
    """Read the header: the structure walk first (service/image_structure.py), then Pillow's. The size
    and the aspect ratio are checked, JPEG's DCT scaling chosen (shorter side >= `shorter_side`; a
    12-Mpixel upload decodes 7-9x faster, docs/architecture.md 6), and the decode priced against `limits`."""
    if not data:
        raise InvalidImage("the image is empty")
    structure = walk(data, limits.max_segments) if limits else Structure()
    file = GuardedBytes(data)
    try:
        image = Image.open(file, formats=FORMATS)
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
        # A 1 x 300 strip has no square to crop from: every view would be one pixel blown up.
        raise InvalidImage(
            f"the image is {width}x{height}, an aspect ratio over the limit of {max_aspect:g}:1; no crop of it"
            " would show the picture"
        )
    if isinstance(image, JpegImageFile):  # MPO (what phones write) is a JPEG subclass: draft applies
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.draft("RGB", scaled_size(width, height, shorter_side))
    cost = price(image, structure, len(data), (width, height))
    if limits is not None:
        limits.check(cost)
    return Opened(image, file, cost)


def load(opened: Opened, limits: DecodeLimits | None = None) -> Image.Image:
    """Decode to an upright image, RGB or (one band) L, within `limits.max_cpu_s` of this thread's CPU."""
    image = opened.image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncated-file and EXIF warnings become errors below
            if limits is not None:
                opened.file.arm(limits.max_cpu_s)
                image.decodermaxblock = _BLOCK
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # a copy of every upright image otherwise
            return _to_rgb_or_grey(image)
    except DecodeTooSlow:
        raise ImageTooCostly(
            f"decoding the image ({opened.cost.what}) took more than {limits.max_cpu_s:g} s of CPU"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"cannot decode the image: {exc.__class__.__name__}") from None


def decode(
    data: bytes, *, max_pixels: int, shorter_side: int = 256, max_aspect: float | None = None,
    limits: DecodeLimits | None = None,
) -> Image.Image:
    """Decode to an upright RGB image (service/preprocess.py's `open_image`, then `load`)."""
    opened = open_image(data, max_pixels=max_pixels, shorter_side=shorter_side, max_aspect=max_aspect, limits=limits)
    image = load(opened, limits)
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_rgb_or_grey(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "L"):  # grey stays one band until the crops: a third of the bytes
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit greyscale: keep the top byte (convert("L") would clip at 255), read in place as bytes.
        pixels = np.asarray(image)
        top = 0 if pixels.dtype.byteorder == ">" or (pixels.dtype.byteorder == "=" and sys.byteorder == "big") else 1
        return Image.fromarray(np.ascontiguousarray(pixels.view(np.uint8)[:, top::2]))
    if image.mode in ("I", "F"):
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def crops_from_image(image: Image.Image, crops: int) -> np.ndarray:
    """Apply the crop plan of `crops` crops: uint8 [crops, 224, 224, 3]."""
    plan = crop_plan(image.width, image.height, crops)
    return Views(image, whole_scales=len(plan) > 1 and _ordinary(image)).crops(plan)


def fill_crops(image: Image.Image, plan: list[Crop], out: np.ndarray) -> None:
    """Write the crop `plan[i]` into `out[i]` (one scale of the 144 crops on each of four threads)."""
    Views(image, whole_scales=len(plan) > 1 and _ordinary(image)).fill(plan, out)


def scale_groups(plan: list[Crop]) -> list[slice]:
    """The plan's runs of crops taken at one scale: independent work, for several threads."""
    groups, start = [], 0
    for i in range(1, len(plan) + 1):
        if i == len(plan) or plan[i].size != plan[start].size:
            groups.append(slice(start, i))
            start = i
    return groups


def _ordinary(image: Image.Image) -> bool:
    return max(image.size) <= WHOLE_SCALE_MAX_ASPECT * min(image.size)


class Views:
    """Crops of one decoded image; each view is made once, its mirror is a slice.

    With `whole_scales` each scale is resized once (and kept for later calls), and it and its
    left-right flip are sliced: every crop is then a copy of 224 contiguous rows (a mirrored numpy
    view would copy pixel by pixel, most of the 144 crops' time). Without, each view is resized
    straight from the source region it covers: past `WHOLE_SCALE_MAX_ASPECT` a whole scale of a
    1 x 300 image at shorter side 352 would be 352 x 105,600 pixels, a decompression bomb in a
    74-byte PNG (docs/reliability.md). A grey image stays one band until here: its band fills the three.
    """

    def __init__(self, image: Image.Image, *, whole_scales: bool) -> None:
        self.image, self.whole_scales = image, whole_scales
        self._scaled: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # size -> (scale, its mirror)

    def crops(self, plan: list[Crop]) -> np.ndarray:
        out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)  # k x 224 x 224 x 3
        self.fill(plan, out)
        return out

    def fill(self, plan: list[Crop], out: np.ndarray) -> None:
        views: dict[tuple[tuple[int, int], tuple[int, int, int, int]], np.ndarray] = {}
        for i, crop in enumerate(plan):
            if self.whole_scales and not crop.needs_resize:
                view = self._slice_of_scale(crop)
            else:
                view = views.get((crop.size, crop.box))
                if view is None:
                    view = self._resize_view(crop) if self.whole_scales else _resize_box(self.image, crop)
                    views[crop.size, crop.box] = view
                view = view[:, ::-1] if crop.mirror else view
            out[i] = view[..., None] if view.ndim == 2 else view

    def _scale(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if size not in self._scaled:
            resized = self.image.resize(size, _RESAMPLE)
            mirrored = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            self._scaled[size] = (np.asarray(resized), np.asarray(mirrored))
        return self._scaled[size]

    def _slice_of_scale(self, crop: Crop) -> np.ndarray:
        plain, mirrored = self._scale(crop.size)
        left, top, right, bottom = crop.box
        if crop.mirror:  # the mirror of a box is the mirrored box of the flipped scale
            width = crop.size[0]
            return mirrored[top:bottom, width - right : width - left]
        return plain[top:bottom, left:right]

    def _resize_view(self, crop: Crop) -> np.ndarray:
        # The paper's "whole square resized to 224", from the scale it was cut at.
        left, top, right, bottom = crop.box
        square = self._scale(crop.size)[0][top:bottom, left:right]
        return np.asarray(Image.fromarray(square).resize((CROP, CROP), _RESAMPLE))


class ImageCrops:
    """One image decoded once for a walk up the Table 3 ladder (service/adaptive.py): its crops are
    made rung by rung, `rows(start, stop)`, reusing the scales already resized.

    `nested`: the walk adds crops, so the plan is `nested_plan` cut at `crops`, whose every rung is
    a prefix; otherwise the crops stay those of the fixed `crops` protocol, pixel for pixel. The
    decode is priced and bounded by `limits` like any other (its memory held while it decodes).
    """

    def __init__(
        self, data: bytes, crops: int, *, nested: bool, max_pixels: int, max_aspect: float | None = None,
        limits: DecodeLimits | None = None,
    ) -> None:
        opened = open_image(data, max_pixels=max_pixels, shorter_side=largest_scale(crops), max_aspect=max_aspect,
                            limits=limits)
        with limits.memory.hold(opened.cost.bytes) if limits else contextlib.nullcontext():
            image = load(opened, limits)
        if nested:
            self.plan = nested_plan(image.width, image.height)[:crops]
        else:
            self.plan = crop_plan(image.width, image.height, crops)
        self._views = Views(image, whole_scales=(nested or len(self.plan) > 1) and _ordinary(image))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """uint8 [stop - start, 224, 224, 3]: crops start..stop-1 of the plan."""
        return self._views.crops(self.plan[start:stop])


def _resize_box(image: Image.Image, crop: Crop) -> np.ndarray:
    # Resize only the source region that becomes the crop (docs/architecture.md 6): the pixels of resizing the
    # whole scale and slicing, up to resampling at the edges, for a cost bounded by the crop's size.
    sx, sy = image.width / crop.size[0], image.height / crop.size[1]
    left, top, right, bottom = crop.box
    box = (left * sx, top * sy, right * sx, bottom * sy)
    return np.asarray(image.resize((CROP, CROP), _RESAMPLE, box=box))


def preprocess(
    data: bytes, crops: int, *, max_pixels: int, max_aspect: float | None = None, limits: DecodeLimits | None = None
) -> np.ndarray:
    """Encoded image -> uint8 [k, 224, 224, 3] with k = `crops` (1, 10 or 144); with `limits`, the
    decode holds its priced bytes of `limits.memory` until the crops are made."""
    opened = open_image(data, max_pixels=max_pixels, shorter_side=largest_scale(crops), max_aspect=max_aspect,
                        limits=limits)
    with limits.memory.hold(opened.cost.bytes) if limits else contextlib.nullcontext():
        return crops_from_image(load(opened, limits), crops)
