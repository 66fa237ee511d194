"""model_export/plot.py: the loss/accuracy plot of a training run."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from model_export.plot import plot_history


def _history(epochs: int = 3) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_top1": 0.2 * e, "val_top1": 0.15 * e,
         "val_top5": 0.3 * e}
        for e in range(1, epochs + 1)
    ]


def test_the_plot_is_a_png_of_two_panels(tmp_path: Path) -> None:
    path = tmp_path / "metrics.png"
    plot_history(_history(), path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 340)
        pixels = np.asarray(image.convert("L"))
    # Something is drawn in each half: two panels, not one.
    left, right = pixels[:, :450], pixels[:, 450:]
    assert (left < 128).sum() > 1000 and (right < 128).sum() > 1000


def test_the_title_is_drawn_when_given(tmp_path: Path) -> None:
    plot_history(_history(), tmp_path / "plain.png")
    plot_history(_history(), str(tmp_path / "titled.png"), title="googlenet-0, width 0.125")
    plain = np.asarray(Image.open(tmp_path / "plain.png").convert("L"))
    titled = np.asarray(Image.open(tmp_path / "titled.png").convert("L"))
    assert (titled[:30] < 128).sum() > (plain[:30] < 128).sum()  # text at the top


def test_no_figure_is_left_open(tmp_path: Path) -> None:
    before = plt.get_fignums()
    for i in range(3):
        plot_history(_history(), tmp_path / f"{i}.png")
    assert plt.get_fignums() == before


def test_it_draws_without_a_display() -> None:
    assert matplotlib.get_backend().lower() == "agg"


def test_a_history_without_a_metric_is_refused(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "val_top5"} for row in _history()]
    with pytest.raises(KeyError, match="val_top5"):
        plot_history(rows, tmp_path / "bad.png")
    plt.close("all")  # the refused plot's figure
