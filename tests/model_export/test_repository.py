"""build-repository: the default (random-init) repository is complete, flagged, labelled and servable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_export import repository
from service.contract import Label
from service.repository import load_repository
from tests.conftest import make_image, serve

MODEL_KEYS = {
    "name",
    "architecture",
    "width_multiplier",
    "input",
    "output",
    "files",
    "trained",
    "weights",
    "opset",
    "created",
}


def test_default_build_says_it_is_untrained(default_repository) -> None:
    _, stdout = default_repository
    assert "UNTRAINED" in stdout and "7 members" in stdout


def test_repository_layout_and_model_json(default_repository) -> None:
    root = default_repository[0]
    assert json.loads((root / "ensemble.json").read_text()) == {
        "name": "googlenet",
        "members": [f"googlenet-{i}" for i in range(7)],
        "primary": "googlenet-0",
    }
    labels = (root / "labels.tsv").read_text(encoding="utf-8").splitlines()
    assert len(labels) == 1000 and labels[0] == "0\tn01440764\ttench" and labels[999] == "999\tn15075141\ttoilet tissue"
    assert oct(root.stat().st_mode & 0o777) == oct(0o755)  # readable by a service running as another user
    for i in range(7):
        record = json.loads((root / f"googlenet-{i}" / "model.json").read_text())
        assert set(record) == MODEL_KEYS and record["name"] == f"googlenet-{i}"
        assert record["trained"] is False and record["weights"]["source"] == "random-init"
        assert record["weights"]["seed"] == i and record["architecture"] == "paper"
        assert record["width_multiplier"] == (1.25 if i == 6 else 1.0)  # the wider member
        assert record["input"] == {
            "name": "image",
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": [-1, 224, 224, 3],
            "color": "RGB",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
        assert record["output"] == {
            "name": "probabilities",
            "dtype": "float32",
            "classes": 1000,
            "softmax": True,
        }
        assert {f["precision"] for f in record["files"].values()} == {"fp32", "fp16"} and record[
            "opset"
        ] >= 17
        assert all(f["parity"]["passed"] for f in record["files"].values())
    assert repository.problems(root) == []


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_service_loads_it_and_onnxruntime_runs_every_member(default_repository, precision) -> None:
    repo = load_repository(default_repository[0], precision=precision)
    assert [m.name for m in repo.members] == [f"googlenet-{i}" for i in range(7)]
    assert {m.precision for m in repo.members} == {precision} and len(repo.labels) == 1000
    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    for member in repo.members:
        session = ort.InferenceSession(str(member.path), providers=["CPUExecutionProvider"])
        (probs,) = session.run(["probabilities"], {"image": images})
        assert probs.shape == (2, 1000) and probs.dtype == np.float32
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_if_missing_keeps_a_valid_repository_and_problems_finds_damage(
    default_repository, build_cli, tmp_path
) -> None:
    root = default_repository[0]
    stamp = (root / "googlenet-0" / "model.json").stat().st_mtime_ns
    done = build_cli("--output", str(root), "--if-missing")
    assert "nothing to do" in done.stdout  # the untouched mtime below proves no member was rebuilt
    assert (root / "googlenet-0" / "model.json").stat().st_mtime_ns == stamp
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("ensemble.json", "labels.tsv"):
        (copy / name).write_bytes((root / name).read_bytes())
    assert any("googlenet-0" in p for p in repository.problems(copy))  # members missing
    assert repository.problems(tmp_path / "absent")


def test_refuses_to_overwrite_a_folder_that_is_not_a_repository(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        repository.build(tmp_path, members=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_labels_file_is_validated(tmp_path) -> None:
    good = tmp_path / "labels.tsv"
    good.write_text("".join(f"{i}\tn{i:08d}\tclass {i}\n" for i in range(1000)), encoding="utf-8")
    assert repository.read_labels(good)[5] == Label(5, "n00000005", "class 5")
    bad = tmp_path / "bad.tsv"
    bad.write_text("".join(f"{i}\tn{i:08d}\n" for i in range(1000)), encoding="utf-8")
    with pytest.raises(ValueError, match="wnid"):
        repository.read_labels(bad)
    short = tmp_path / "short.tsv"
    short.write_text("0\tn0\ttench\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1000"):
        repository.read_labels(short)


def test_sources_must_fit_the_repository(trained_run: Path, tmp_path) -> None:
    with pytest.raises(ValueError, match="needs 1000"):  # a 4-class texture model is not an ImageNet member
        repository.build(
            tmp_path / "r", checkpoints=[str(trained_run / "checkpoint.pt")], precisions=("fp32",)
        )
    with pytest.raises(ValueError, match="--members"):
        repository.build(tmp_path / "r", checkpoints=["a.pt", "b.pt"], members=3)
    assert not (tmp_path / "r").exists()


def test_every_answer_of_the_default_repository_carries_the_ilsvrc_wnid(default_repository) -> None:
    with serve(default_repository[0], models=2) as live, live.client() as client:
        for crops in (1, 10):
            answer = client.post("/v1/classify", params={"crops": crops, "topk": 1000, "ensemble": True},
                                 content=make_image(), headers={"content-type": "image/jpeg"}).json()
            wnids = [p["wnid"] for p in answer["predictions"]]
            assert len(wnids) == 1000 and all(re.fullmatch(r"n\d{8}", w) for w in wnids), wnids[:5]
            assert len(set(wnids)) == 1000
