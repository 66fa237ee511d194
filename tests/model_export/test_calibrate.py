"""`calibrate` writes the repository's adaptive.json, which the service reads; `evaluate --adaptive`
reports the walks from the same cached probabilities, and draws the Pareto plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_export import calibrate, evaluate
from model_export.__main__ import parser
from model_export.synthetic import write_dataset
from service import stopping
from service.repository import load_repository
from tests.tiny_models import write_repository


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("calibrate")
    repo = write_repository(root / "repo", members=3)
    data = write_dataset(root / "data", classes=2, train_per_class=0, val_per_class=2, calibration_per_class=2)
    return repo, data


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_calibrate_writes_thresholds_the_service_reads(setup: tuple[Path, Path], tmp_path: Path) -> None:
    repo, data = setup
    cache = tmp_path / "calibration.npz"
    args = parse("calibrate", "--repository", str(repo), "--data", str(data), "--cache", str(cache), "--no-progress")
    document = calibrate.main(args)
    written = json.loads((repo / stopping.FILE).read_text())
    assert written == json.loads(json.dumps(document))
    assert written["calibration"]["images"] == 4 and written["calibration"]["data"] == "data/calibration"
    rule = load_repository(repo).stopping
    assert rule.calibrated and set(rule.thresholds) >= {"1x1", "1x3", "10x3", "10x1", "144x1"}
    for walk in written["calibration"]["walks"]:  # each walk within its bound (0 points) on these images
        assert walk["top1_error"] <= walk["top_rung_top1_error"] + 1e-9
    assert cache.is_file()


def test_a_matching_cache_is_read_instead_of_running_the_members(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, data = setup
    cache = tmp_path / "val.npz"
    argv = ["evaluate", "--repository", str(repo), "--data", str(data), "--models", "1,3", "--adaptive",
            "--cache", str(cache), "--no-progress"]
    real, runs = evaluate.collect, []
    monkeypatch.setattr(evaluate, "collect", lambda *a, **k: runs.append(len(a[1])) or real(*a, **k))
    first = evaluate.main(parse(*argv))
    assert evaluate.main(parse(*argv)) == first and runs == [4]  # the second run read the cache
    evaluate.main(parse(*argv[:-3], "--limit", "2", "--cache", str(cache), "--no-progress"))
    assert runs == [4, 2]  # other images: the cache did not match, and was made again


def test_evaluate_adaptive_reports_the_walks_and_draws_the_plot(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, data = setup
    out, png = tmp_path / "rows.json", tmp_path / "pareto.png"
    evaluate.main(parse("evaluate", "--repository", str(repo), "--data", str(data), "--models", "1,3", "--adaptive",
                        "--sweep", "0,0.5,2", "--plot", str(png), "--json", str(out), "--no-progress"))
    document = json.loads(out.read_text())
    assert [r["rungs"] for r in document["adaptive"]][0] == ["1x1", "1x3", "10x3", "144x3"]
    assert len(document["every_fixed"]) == 9 and [r["margin"] for r in document["sweep"]] == [0, 0.5, 2]
    assert document["sweep"][0]["mean_evaluations"] == 1  # a margin of 0 stops every image at once
    assert document["sweep"][-1]["mean_evaluations"] == 432  # one above 1 never stops: the top rung
    for row in document["adaptive"]:
        assert 1 <= row["mean_evaluations"] <= row["p99_evaluations"] <= 432
        assert sum(row["stopped"].values()) == 4
    assert "| rungs | top-1 error | top-5 error | mean evaluations | p99 evaluations |" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300


def test_adaptive_needs_every_crop_count(setup: tuple[Path, Path]) -> None:
    repo, data = setup
    with pytest.raises(ValueError, match="--adaptive walks every crop count"):
        evaluate.main(parse("evaluate", "--repository", str(repo), "--data", str(data), "--crops", "1,10",
                            "--adaptive", "--no-progress"))


def test_processes_share_the_images_and_give_the_same_numbers(setup: tuple[Path, Path]) -> None:
    repo, data = setup
    argv = ["evaluate", "--repository", str(repo), "--data", str(data), "--models", "1,3", "--no-progress"]
    alone = evaluate.cached_collect(parse(*argv), (1, 10, 144), 3)
    shared = evaluate.cached_collect(parse(*argv, "--jobs", "2"), (1, 10, 144), 3)
    assert alone.probs.keys() == shared.probs.keys() and (alone.targets == shared.targets).all()
    for key in alone.probs:
        np.testing.assert_allclose(shared.probs[key], alone.probs[key], atol=1e-6)
