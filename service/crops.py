"""Test-time crop geometry of the paper (section 7): which boxes 1, 10 and 144 crops take.

Pure arithmetic, no image library: `preprocess` applies the plan to pixels, and
`model_export.evaluate` imports the same plan, so the protocol exists exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.contract import IMAGE_SIDE

CROP = IMAGE_SIDE  # the model input side (service/contract.py)
CROP_COUNTS = (1, 10, 144)
# 144 crops: shorter side resized to 4 scales (paper section 7; googlenet-spec.md 4.1).
SCALES_144 = (256, 288, 320, 352)
# 1 and 10 crops: the standard shorter side 256 (Krizhevsky; googlenet-spec.md 4.2).
SCALE_STANDARD = 256

View = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center", "whole"]
CORNERS_AND_CENTER: tuple[View, ...] = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


@dataclass(frozen=True)
class Crop:
    """One view: a box in the image resized to `size`, resized to 224 if larger, maybe mirrored."""

    size: tuple[int, int]  # (width, height) of the whole image at this scale
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in that image
    mirror: bool

    @property
    def needs_resize(self) -> bool:
        return self.box[2] - self.box[0] != CROP


def scaled_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """Isotropic resize so that the shorter side becomes `shorter` (rounded like torchvision)."""
    if width <= height:
        return shorter, max(1, int(shorter * height / width))
    return max(1, int(shorter * width / height)), shorter


def _squares(size: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """Top-left corners of the squares of side min(size): center only, or the paper's three."""
    w, h = size
    side = min(w, h)
    center = ((w - side) // 2, (h - side) // 2)
    if count == 1:
        return [center]
    if w >= h:  # landscape (or square): left, center, right
        return [(0, 0), center, (w - side, 0)]
    return [(0, 0), center, (0, h - side)]  # portrait: top, center, bottom


def _view_box(left: int, top: int, side: int, view: View) -> tuple[int, int, int, int]:
    if view == "whole":
        return left, top, left + side, top + side
    dx = {"top_left": 0, "bottom_left": 0, "top_right": side - CROP, "bottom_right": side - CROP}
    dy = {"top_left": 0, "top_right": 0, "bottom_left": side - CROP, "bottom_right": side - CROP}
    x = left + dx.get(view, (side - CROP) // 2)
    y = top + dy.get(view, (side - CROP) // 2)
    return x, y, x + CROP, y + CROP


def crop_plan(width: int, height: int, crops: int) -> list[Crop]:
    """The crops of the paper's test-time protocol for an image of `width` x `height` pixels.

    1: shorter side 256, center 224 crop.
    10: shorter side 256, central square, 4 corners + center, and their mirrors.
    144: shorter sides 256/288/320/352 x 3 squares x (4 corners + center + whole square) x 2 mirrors.
    """
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
    if width < 1 or height < 1:
        raise ValueError(f"image must have a positive size, got {width}x{height}")
    if crops == 1:
        # torchvision's CenterCrop rounding, so a torch-side evaluation sees the same pixels.
        size = scaled_size(width, height, SCALE_STANDARD)
        left, top = round((size[0] - CROP) / 2), round((size[1] - CROP) / 2)
        return [Crop(size, (left, top, left + CROP, top + CROP), mirror=False)]
    scales = (SCALE_STANDARD,) if crops == 10 else SCALES_144
    views: tuple[View, ...] = CORNERS_AND_CENTER if crops == 10 else (*CORNERS_AND_CENTER, "whole")
    plan = []
    for shorter in scales:
        size = scaled_size(width, height, shorter)
        for left, top in _squares(size, 1 if crops == 10 else 3):
            for view in views:
                box = _view_box(left, top, shorter, view)
                plan += [Crop(size, box, mirror=False), Crop(size, box, mirror=True)]
    return plan


def largest_scale(crops: int) -> int:
    """The largest shorter side a plan resizes to: how far JPEG draft decoding may shrink."""
    return SCALES_144[-1] if crops == 144 else SCALE_STANDARD
