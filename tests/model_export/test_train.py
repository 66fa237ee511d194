"""A real short training run on generated textures: it learns, and a resumed run continues the same curve."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model_export import checkpoint


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_run_lowers_the_loss_and_beats_chance(trained_run: Path) -> None:
    rows = history(trained_run)
    first, last = rows[0], rows[-1]
    print(
        f"train loss {first['train_loss']:.3f} -> {last['train_loss']:.3f}; held-out top-1 "
        f"{first['val_top1']:.0%} -> {last['val_top1']:.0%} (chance 25%)"
    )
    assert last["train_loss"] < 0.85 * first["train_loss"]
    assert last["val_loss"] < first["val_loss"]
    assert last["val_top1"] >= 0.45  # 4 classes, 48 held-out images: chance is 25%


def test_lr_schedule_and_outputs_of_a_run(trained_run: Path) -> None:
    rows = history(trained_run)
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    assert rows[0]["lr"] == rows[3]["lr"] == 0.01 and abs(rows[4]["lr"] - 0.0096) < 1e-12  # x0.96 / 4 epochs
    assert (trained_run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_holds_only_tensors_and_plain_values(trained_run: Path) -> None:
    state = torch.load(trained_run / "checkpoint.pt", weights_only=True)  # would refuse pickled objects
    assert state["epoch"] == 12 and state["config"]["variant"] == "torchvision"
    assert state["classes"] == ["checker", "dots", "hstripes", "vstripes"]
    assert state["recipe"]["aux_weight"] == 0.3 and state["n_averaged"] == 12 * 6  # one update per step
    model, _ = checkpoint.inference_model(trained_run / "checkpoint.pt")
    assert model.aux1 is None and not model.training
    averaged = state["averaged_model"]["fc.weight"]
    assert torch.equal(model.fc.weight, averaged) and not torch.equal(averaged, state["model"]["fc.weight"])


def test_resumed_run_repeats_the_uninterrupted_curve(trained_run: Path, resumed_run: Path) -> None:
    def curve(run: Path) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history(run)[:3]]

    resumed, uninterrupted = curve(resumed_run), curve(trained_run)
    assert len(resumed) == 3
    for a, b in zip(resumed, uninterrupted, strict=False):
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= 1e-6 * max(1.0, abs(b[key])), (a["epoch"], key, a[key], b[key])
    # the loss kept falling across the break, as it does without one
    assert resumed[2]["train_loss"] != resumed[1]["train_loss"]
