"""`calibrate` writes the repository's adaptive.json, which the service reads; `evaluate --adaptive`
reports the walks from the same cached probabilities, and draws the Pareto plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image

from model_export import calibrate, evaluate
from model_export.__main__ import parser
from service import stopping
from service.repository import load_repository


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_calibrate_writes_thresholds_the_service_reads(tiny_calibration: tuple[Path, Path], tmp_path: Path) -> None:
    repo, data = tiny_calibration
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


def test_evaluate_adaptive_reports_the_walks_and_draws_the_plot(
    tiny_calibration: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, data = tiny_calibration
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


def test_adaptive_needs_every_crop_count(tiny_calibration: tuple[Path, Path]) -> None:
    repo, data = tiny_calibration
    with pytest.raises(ValueError, match="--adaptive walks every crop count"):
        evaluate.main(parse("evaluate", "--repository", str(repo), "--data", str(data), "--crops", "1,10",
                            "--adaptive", "--no-progress"))
