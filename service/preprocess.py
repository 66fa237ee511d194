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

from service.crops import CROP, Crop, crop_plan, largest_scale, nested_plan, scaled_size
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
    """Apply the crop plan; each view is made once and mirrored as a slice.

    At an ordinary aspect ratio each scale is resized once and the views are slices of it. Past
    `WHOLE_SCALE_MAX_ASPECT` each view is resized straight from the source region it covers
    instead: a whole scale of a 1 x 300 image at shorter side 352 would be 352 x 105,600 pixels,
    a decompression bomb in a 74-byte PNG (issue 12). A single crop always takes the region path.
    """
    plan = crop_plan(image.width, image.height, crops)
    return Views(image, whole_scales=len(plan) > 1 and _ordinary(image)).crops(plan)


def _ordinary(image: Image.Image) -> bool:
    return max(image.size) <= WHOLE_SCALE_MAX_ASPECT * min(image.size)


class Views:
    """Crops of one decoded image: from whole scales (each resized once, kept for later calls) or
    each from its source region (`whole_scales` False)."""

    def __init__(self, image: Image.Image, *, whole_scales: bool) -> None:
        self.image, self.whole_scales = image, whole_scales
        self._scaled: dict[tuple[int, int], np.ndarray] = {}

    def crops(self, plan: list[Crop]) -> np.ndarray:
        out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)  # k x 224 x 224 x 3
        views: dict[tuple[tuple[int, int], tuple[int, int, int, int]], np.ndarray] = {}
        for i, crop in enumerate(plan):
            view = views.get((crop.size, crop.box))
            if view is None:
                whole = self.whole_scales
                view = _slice_of_scale(self.image, crop, self._scaled) if whole else _resize_box(self.image, crop)
                views[crop.size, crop.box] = view
            out[i] = view[:, ::-1] if crop.mirror else view
        return out


class ImageCrops:
    """One image decoded once for a walk up the Table 3 ladder (service/adaptive.py): its crops are
    made rung by rung, `rows(start, stop)`, reusing the scales already resized.

    `nested`: the walk adds crops, so the plan is `nested_plan` cut at `crops`, whose every rung is
    a prefix; otherwise the crops stay those of the fixed `crops` protocol, pixel for pixel.
    """

    def __init__(
        self, data: bytes, crops: int, *, nested: bool, max_pixels: int, max_aspect: float | None = None
    ) -> None:
        image = decode(data, max_pixels=max_pixels, shorter_side=largest_scale(crops), max_aspect=max_aspect)
        if nested:
            self.plan = nested_plan(image.width, image.height)[:crops]
        else:
            self.plan = crop_plan(image.width, image.height, crops)
        self._views = Views(image, whole_scales=(nested or len(self.plan) > 1) and _ordinary(image))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """uint8 [stop - start, 224, 224, 3]: crops start..stop-1 of the plan."""
        return self._views.crops(self.plan[start:stop])


def _slice_of_scale(image: Image.Image, crop: Crop, scaled: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    if crop.size not in scaled:
        scaled[crop.size] = np.asarray(image.resize(crop.size, _RESAMPLE))  # H x W x 3
    left, top, right, bottom = crop.box
    view = scaled[crop.size][top:bottom, left:right]
    if crop.needs_resize:  # the paper's "whole square resized to 224"
        view = np.asarray(Image.fromarray(view).resize((CROP, CROP), _RESAMPLE))
    return view


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
