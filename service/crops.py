"""Test-time crop geometry of the paper (section 7): which boxes 1, 10 and 144 crops take.

Pure arithmetic, no image library: `preprocess` applies the plan to pixels, and
`model_export.evaluate` imports the same plan, so the protocol exists exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.contract import IMAGE_SIDE

CROP = IMAGE_SIDE  # the model input side (service/contract.py)

View = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center", "whole"]
CORNERS_AND_CENTER: tuple[View, ...] = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


@dataclass(frozen=True)
class Protocol:
    """One test-time protocol: scales x squares per scale x views x mirrors crops."""

    scales: tuple[int, ...]  # shorter sides the image is resized to
    squares: int  # squares taken per scale: the central one, or left/center/right (top/center/bottom)
    views: tuple[View, ...]  # 224 crops taken from each square
    mirrored: bool  # each view also flipped left-right

    @property
    def crops(self) -> int:
        return len(self.scales) * self.squares * len(self.views) * (2 if self.mirrored else 1)


# The paper's protocols (section 7; docs/googlenet.md 4): 1 and 10 crops at the standard
# shorter side 256 (Krizhevsky), 144 crops at 4 scales x 3 squares x (4 corners, center, whole) x 2.
PROTOCOLS: dict[int, Protocol] = {
    p.crops: p
    for p in (
        Protocol(scales=(256,), squares=1, views=("center",), mirrored=False),
        Protocol(scales=(256,), squares=1, views=CORNERS_AND_CENTER, mirrored=True),
        Protocol(scales=(256, 288, 320, 352), squares=3, views=(*CORNERS_AND_CENTER, "whole"), mirrored=True),
    )
}
CROP_COUNTS = tuple(PROTOCOLS)  # (1, 10, 144)


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
    """The crops of the paper's protocol with `crops` crops (PROTOCOLS) for a `width` x `height` image."""
    protocol = protocol_for(crops)
    if width < 1 or height < 1:
        raise ValueError(f"image must have a positive size, got {width}x{height}")
    if protocol.crops == 1:
        # torchvision's CenterCrop rounding, so a torch-side evaluation sees the same pixels.
        size = scaled_size(width, height, protocol.scales[0])
        left, top = round((size[0] - CROP) / 2), round((size[1] - CROP) / 2)
        return [Crop(size, (left, top, left + CROP, top + CROP), mirror=False)]
    mirrors = (False, True) if protocol.mirrored else (False,)
    plan = []
    for shorter in protocol.scales:
        size = scaled_size(width, height, shorter)
        for left, top in _squares(size, protocol.squares):
            for view in protocol.views:
                box = _view_box(left, top, shorter, view)
                plan += [Crop(size, box, mirror=mirror) for mirror in mirrors]
    return plan


def protocol_for(crops: int) -> Protocol:
    try:
        return PROTOCOLS[crops]
    except KeyError:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}") from None


def largest_scale(crops: int) -> int:
    """The largest shorter side a plan resizes to: how far JPEG draft decoding may shrink."""
    return protocol_for(crops).scales[-1]


# Adaptive walks (service/adaptive.py) add crops rung by rung and keep what they ran: the 144
# crops in an order whose first 1 and first 10 are themselves rungs. The 10 are the 144's views of
# the centre square at shorter side 256, so each prefix is exactly a fixed protocol's set of crops,
# except the first, which is the centre of the 10 (at most a pixel from the 1-crop protocol's box).
NESTED = (1, 10, 144)


def nested_plan(width: int, height: int) -> list[Crop]:
    """The 144-crop plan reordered: the 10-crop plan's centre view, its other 9, then the other 134."""
    full, ten = crop_plan(width, height, 144), crop_plan(width, height, 10)
    centre = CORNERS_AND_CENTER.index("center") * 2  # the 10 are views x (plain, mirrored)
    free = list(range(len(full)))
    for crop in [ten[centre], *ten[:centre], *ten[centre + 1 :]]:
        free.remove(next(i for i in free if full[i] == crop))  # duplicates (a square image): one each
    return [ten[centre], *ten[:centre], *ten[centre + 1 :]] + [full[i] for i in free]
