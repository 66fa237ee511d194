"""model_export/probabilities.py: every member's crop means computed once per image, kept in a
.npz cache that is reused only for the same members, images and crops, and shared over processes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from model_export import evaluate, probabilities
from model_export.__main__ import parser


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_a_matching_cache_is_read_instead_of_running_the_members(
    tiny_calibration: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, data = tiny_calibration
    cache = tmp_path / "val.npz"
    argv = ["evaluate", "--repository", str(repo), "--data", str(data), "--models", "1,3", "--adaptive",
            "--cache", str(cache), "--no-progress"]
    real, runs = probabilities.collect, []
    monkeypatch.setattr(probabilities, "collect", lambda *a, **k: runs.append(len(a[1])) or real(*a, **k))
    first = evaluate.main(parse(*argv))
    assert evaluate.main(parse(*argv)) == first and runs == [4]  # the second run read the cache
    evaluate.main(parse(*argv[:-3], "--limit", "2", "--cache", str(cache), "--no-progress"))
    assert runs == [4, 2]  # other images: the cache did not match, and was made again


def test_processes_share_the_images_and_give_the_same_numbers(tiny_calibration: tuple[Path, Path]) -> None:
    repo, data = tiny_calibration
    argv = ["evaluate", "--repository", str(repo), "--data", str(data), "--models", "1,3", "--no-progress"]
    alone = probabilities.cached_collect(parse(*argv), (1, 10, 144), 3)
    shared = probabilities.cached_collect(parse(*argv, "--jobs", "2"), (1, 10, 144), 3)
    assert alone.probs.keys() == shared.probs.keys() and (alone.targets == shared.targets).all()
    for key in alone.probs:
        np.testing.assert_allclose(shared.probs[key], alone.probs[key], atol=1e-6)
