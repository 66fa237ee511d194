"""Request mixes and modes: parsing, normalised shares, refusals with a reason."""

from __future__ import annotations

import random

import pytest

from loadtest.mix import Mix, Mode


def test_mix_parses_modes_and_normalises_shares() -> None:
    mix = Mix.parse("1x1:0.9, 10x1:0.09,144x7:0.01")
    assert [m.name for m in mix.modes] == ["1x1", "10x1", "144x7"]
    assert sum(mix.weights) == pytest.approx(1.0)
    assert mix.evaluations == pytest.approx(0.9 * 1 + 0.09 * 10 + 0.01 * 1008)
    assert Mix.parse("1x1,10x1").weights == (0.5, 0.5)  # a missing share counts 1


def test_choose_follows_the_shares() -> None:
    mix = Mix.parse("1x1:3,10x2:1")
    rng = random.Random(7)
    picks = [mix.choose(rng).name for _ in range(4000)]
    assert 0.7 < picks.count("1x1") / len(picks) < 0.8


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("2x1", "crops must be one of"), ("1x0", "models >= 1"), ("1y1", "CROPSxMODELS"),
     ("1x1:abc", "not a number"), ("1x1:0", "positive"), ("1x1,1x1", "twice")],
)
def test_bad_mixes_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mix.parse(text)


def test_mode_cost_is_crops_times_models() -> None:
    assert Mode.parse("144x7").evaluations == 1008
    assert Mode.parse("10X3").name == "10x3"
