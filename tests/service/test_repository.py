"""Reading the model repository: layout, versions, checksums, labels (docs/architecture.md 3.1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.repository import RepositoryError, load_repository
from tests.tiny_models import write_repository


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "repo", members=2)


def test_members_in_ensemble_order_with_the_primary_first(repo: Path) -> None:
    ensemble = json.loads((repo / "ensemble.json").read_text())
    ensemble["primary"] = "tiny-1"
    (repo / "ensemble.json").write_text(json.dumps(ensemble))
    loaded = load_repository(repo)
    assert [m.name for m in loaded.members] == ["tiny-1", "tiny-0"]
    assert loaded.labels[0].wnid == "n00000000" and len(loaded.labels) == 1000
    assert load_repository(repo, limit=1).members[0].name == "tiny-1"


def test_the_highest_version_is_served(repo: Path) -> None:
    shutil.copytree(repo / "tiny-0" / "1", repo / "tiny-0" / "10")
    assert load_repository(repo).members[0].version == 10


def test_fp16_falls_back_to_fp32_when_absent(repo: Path) -> None:
    entry = load_repository(repo, precision="fp16").members[0]
    assert entry.precision == "fp32" and entry.path.name == "model.onnx"


def test_a_corrupt_model_file_fails_its_checksum(repo: Path) -> None:
    path = repo / "tiny-1" / "1" / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RepositoryError, match="sha256"):
        load_repository(repo)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: (r / "ensemble.json").unlink(), "ensemble.json"),
        (lambda r: (r / "ensemble.json").write_text("[1, 2"), "ensemble.json"),
        (lambda r: (r / "ensemble.json").write_text('{"members": []}'), "members"),
        (lambda r: (r / "ensemble.json").write_text('{"members": ["../etc"]}'), "missing"),
        (lambda r: shutil.rmtree(r / "tiny-0" / "1"), "version"),
        (lambda r: (r / "tiny-0" / "1" / "model.onnx").unlink(), "model.onnx"),
        (lambda r: (r / "labels.tsv").write_text("0\tn0\tone\n"), "labels"),
        (lambda r: (r / "tiny-1" / "model.json").unlink(), "model.json"),
    ],
)
def test_broken_repositories_are_refused_clearly(repo: Path, breakage, message: str) -> None:
    breakage(repo)
    with pytest.raises(RepositoryError, match=message):
        load_repository(repo)


def test_a_missing_repository_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="build-repository"):
        load_repository(tmp_path / "nowhere")
