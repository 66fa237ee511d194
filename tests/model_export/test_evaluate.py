"""evaluate: Table 3 from torch checkpoints or ONNX files, with the service's own crops."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import service.preprocess
from model_export import evaluate, export, probabilities
from model_export.onnx_graph import Deployed


def args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    base = parser.parse_args(["--repository", "x", "--data", "x", "--no-progress"])
    base.repository = None
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


@pytest.fixture(scope="module")
def torch_rows(trained_run: Path, resumed_run: Path, shapes: Path, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("eval") / "rows.json"
    checkpoints = [str(trained_run / "checkpoint.pt"), str(resumed_run / "checkpoint.pt")]
    rows = evaluate.main(
        args(
            checkpoints=checkpoints, data=str(shapes), crops="1,10,144", models="1,2", limit=4, json=str(out)
        )
    )
    assert json.loads(out.read_text()) == rows
    return rows


def test_table_has_every_model_crop_pair_with_cost_and_delta(torch_rows, capsys) -> None:
    assert [(r["models"], r["crops"], r["cost"]) for r in torch_rows] == [
        (1, 1, 1),
        (1, 10, 10),
        (1, 144, 144),
        (2, 1, 2),
        (2, 10, 20),
        (2, 144, 288),
    ]
    assert torch_rows[0]["delta_top5"] == 0 and torch_rows[0]["paper_top5_error"] == 10.07
    assert all(0 <= r["top1_error"] <= 1 and 0 <= r["top5_error"] <= r["top1_error"] for r in torch_rows)
    for r in torch_rows:
        assert r["delta_top5"] == pytest.approx(r["top5_error"] - torch_rows[0]["top5_error"])
    text = evaluate.render(torch_rows, 4)
    assert "| models | crops | cost | top-1 error | top-5 error |" in text and "| 2 | 144 | 288 |" in text


def test_one_crop_single_model_error_matches_a_direct_computation(torch_rows, trained_run, shapes) -> None:
    model = Deployed(export.from_checkpoint(trained_run / "checkpoint.pt")[0]).eval()
    images = probabilities.val_images(shapes, 4)
    wrong = 0
    for data, target in images:
        crop = service.preprocess.preprocess(data, 1, max_pixels=10**8)
        with torch.inference_mode():
            wrong += int(model(torch.from_numpy(crop)).argmax(1).item() != target)
    assert torch_rows[0]["top1_error"] == pytest.approx(wrong / 4)
    print(
        "Table 3 on 4 held-out textures (trained tiny model + its epoch-3 ancestor):\n"
        + evaluate.render(torch_rows, 4)
    )


def test_crops_come_from_the_service(trained_run, shapes) -> None:
    # One run per image and member serves every crop count: the 1-crop protocol's crop, then the
    # nested plan, whose first 10 and all 144 are the 10- and 144-crop protocols' crops.
    member = probabilities.torch_member(trained_run / "checkpoint.pt")
    images = probabilities.val_images(shapes, 2)
    cache = probabilities.collect([member], images, (1, 10, 144), progress=False)
    assert set(cache.probs) == {"1", "1n", "10", "144"}
    for i, (data, _) in enumerate(images):
        for crops in (1, 10, 144):
            direct = member(service.preprocess.preprocess(data, crops, max_pixels=10**8)).mean(axis=0)
            np.testing.assert_allclose(cache.probs[str(crops)][0, i], direct, atol=1e-5)
        centre = service.preprocess.preprocess(data, 10, max_pixels=10**8)[8:9]  # views x mirrors: the centre
        np.testing.assert_allclose(cache.probs["1n"][0, i], member(centre)[0], atol=1e-5)


def test_onnx_files_give_the_torch_numbers(trained_run, shapes, tmp_path) -> None:
    model, weights, trained = export.from_checkpoint(trained_run / "checkpoint.pt")
    export.write_member(
        tmp_path,
        "googlenet-0",
        model,
        weights=weights,
        trained=trained,
        precisions=("fp32",),
        images=export.parity_images(2),
    )
    (tmp_path / "ensemble.json").write_text(
        json.dumps({"name": "googlenet", "members": ["googlenet-0"], "primary": "googlenet-0"})
    )
    images = probabilities.val_images(shapes, 6)
    ((_, run),) = probabilities.onnx_members(tmp_path)
    onnx_cache = probabilities.collect([run], images, (1, 10), progress=False)
    torch_cache = probabilities.collect(
        [probabilities.torch_member(trained_run / "checkpoint.pt")], images, (1, 10), progress=False
    )
    for key in onnx_cache.probs:
        assert np.abs(onnx_cache.probs[key] - torch_cache.probs[key]).max() <= 1e-5
    assert len(onnx_cache.targets) == 6


def test_repository_ensemble_of_seven(default_repository, tmp_path) -> None:
    from model_export.synthetic import write_dataset

    data = write_dataset(tmp_path / "two", classes=2, train_per_class=0, val_per_class=1)
    rows = evaluate.main(args(repository=str(default_repository[0]), data=str(data), crops="1", models="1,7"))
    assert [(r["models"], r["crops"], r["cost"]) for r in rows] == [(1, 1, 1), (7, 1, 7)]
