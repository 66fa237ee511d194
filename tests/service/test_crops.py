"""The paper's test-time crops (section 7; docs/googlenet.md 4), box by box."""

from __future__ import annotations

import pytest

from service.crops import CROP, CROP_COUNTS, PROTOCOLS, crop_plan, largest_scale, nested_plan, scaled_size


def test_one_crop_is_the_center_of_the_256_resize() -> None:
    (crop,) = crop_plan(500, 375, 1)
    assert crop.size == (341, 256)
    assert crop.box == (58, 16, 282, 240)
    assert not crop.mirror


def test_ten_crops_are_four_corners_and_center_of_the_central_square_with_mirrors() -> None:
    plan = crop_plan(500, 375, 10)
    assert len(plan) == len(set(plan)) == 10
    left = (341 - 256) // 2  # central 256 x 256 square of the 341 x 256 resize
    corners = {(left, 0), (left + 32, 0), (left, 32), (left + 32, 32), (left + 16, 16)}
    assert {c.box[:2] for c in plan} == corners
    assert all(c.box[2] - c.box[0] == c.box[3] - c.box[1] == CROP for c in plan)
    assert sum(c.mirror for c in plan) == 5
    assert {(c.box, c.mirror) for c in plan} == {(c.box, m) for c in plan for m in (False, True)}


@pytest.mark.parametrize(("width", "height"), [(500, 375), (375, 500)])
def test_144_crops_4_scales_3_squares_6_views_2_mirrors(width: int, height: int) -> None:
    plan = crop_plan(width, height, 144)
    assert len(plan) == len(set(plan)) == 144
    for shorter in (256, 288, 320, 352):
        size = scaled_size(width, height, shorter)
        at_scale = [c for c in plan if c.size == size]
        assert len(at_scale) == 36
        landscape = width > height
        # squares of side `shorter`: left/center/right (landscape) or top/center/bottom (portrait)
        squares = {c.box[0 if landscape else 1] for c in at_scale if c.needs_resize}
        long_side = size[0] if landscape else size[1]
        assert squares == {0, (long_side - shorter) // 2, long_side - shorter}
        whole = [c for c in at_scale if c.needs_resize]
        assert len(whole) == 6 and all(c.box[2] - c.box[0] == shorter for c in whole)
        assert sum(c.mirror for c in at_scale) == 18
        assert all(0 <= c.box[0] < c.box[2] <= size[0] and 0 <= c.box[1] < c.box[3] <= size[1] for c in at_scale)


def test_scaled_size_keeps_the_aspect_ratio() -> None:
    assert scaled_size(500, 375, 256) == (341, 256)
    assert scaled_size(375, 500, 352) == (352, 469)
    assert scaled_size(224, 224, 288) == (288, 288)


@pytest.mark.parametrize("crops", [0, 2, 100])
def test_other_crop_counts_are_refused(crops: int) -> None:
    with pytest.raises(ValueError):
        crop_plan(100, 100, crops)


def test_the_protocol_table_is_the_papers_three() -> None:
    assert CROP_COUNTS == (1, 10, 144)
    for crops, protocol in PROTOCOLS.items():
        assert protocol.crops == crops == len(crop_plan(640, 480, crops))
    assert [largest_scale(c) for c in CROP_COUNTS] == [256, 256, 352]


@pytest.mark.parametrize(("width", "height"), [(300, 256), (256, 256), (303, 500), (1000, 120), (500, 375)])
def test_the_nested_plan_holds_every_protocol_as_a_prefix(width: int, height: int) -> None:
    nested = nested_plan(width, height)
    assert sorted(map(repr, nested)) == sorted(map(repr, crop_plan(width, height, 144)))  # the 144, reordered
    assert sorted(map(repr, nested[:10])) == sorted(map(repr, crop_plan(width, height, 10)))
    ten = crop_plan(width, height, 10)
    assert nested[0] == ten[8] and not nested[0].mirror  # the unmirrored centre of the 10 comes first
    one = crop_plan(width, height, 1)[0]  # the 1-crop protocol's box: at most a pixel away
    assert nested[0].size == one.size and max(abs(a - b) for a, b in zip(nested[0].box, one.box, strict=True)) <= 1
