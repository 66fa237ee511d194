"""model_export/checkpoint.py: atomic checkpoint files, weights-only loads, the exportable model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from model_export import checkpoint
from model_export.model import GoogLeNetConfig, build

CONFIG = GoogLeNetConfig(variant="paper", width=0.125, num_classes=4)


def _record(averaged_seed: int | None = 1) -> dict:
    model = build(CONFIG, seed=0)
    state = {"config": CONFIG.to_dict(), "model": model.state_dict(), "epoch": 3, "history": [{"epoch": 1}]}
    if averaged_seed is not None:
        state["averaged_model"] = build(CONFIG, seed=averaged_seed).state_dict()
    return state


def test_a_saved_state_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"epoch": 4, "lr": 0.01, "names": ["a", "b"], "w": torch.arange(6.0)}, path)
    state = checkpoint.load(path)
    assert (state["epoch"], state["lr"], state["names"]) == (4, 0.01, ["a", "b"])
    assert torch.equal(state["w"], torch.arange(6.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file is left


def test_saving_again_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"epoch": 1}, path)
    checkpoint.save({"epoch": 2}, str(path))
    assert checkpoint.load(str(path)) == {"epoch": 2}


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"epoch": 1}, path)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        checkpoint.save({"epoch": 2, "hook": lambda: None}, path)
    assert checkpoint.load(path) == {"epoch": 1}


def test_a_file_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"where": Path("/")}, path)  # loading it would need to run code of the file's choosing
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(path)


def test_the_inference_model_has_the_averaged_weights_in_eval_mode_without_aux_heads(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    record = _record(averaged_seed=1)
    checkpoint.save(record, path)
    model, state = checkpoint.inference_model(path)
    assert not model.training and model.config.aux_logits is False
    assert model.config == GoogLeNetConfig(variant="paper", width=0.125, num_classes=4, aux_logits=False)
    assert not any(name.startswith("aux") for name in model.state_dict())
    averaged = record["averaged_model"]
    assert all(torch.equal(v, averaged[k]) for k, v in model.state_dict().items())
    assert (state["epoch"], state["history"]) == (3, [{"epoch": 1}])
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 4)


def test_without_averaged_weights_the_trained_ones_are_used(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    record = _record(averaged_seed=None)
    checkpoint.save(record, path)
    model, _ = checkpoint.inference_model(path)
    assert all(torch.equal(v, record["model"][k]) for k, v in model.state_dict().items())


def test_a_file_that_is_not_a_training_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    checkpoint.save(build(CONFIG, seed=0).state_dict(), path)
    with pytest.raises(ValueError, match="not a training checkpoint of this package.*--torchvision-weights"):
        checkpoint.inference_model(path)
