"""The loss/accuracy plot of a training run, drawn from its per-epoch metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; training machines have no display

import matplotlib.pyplot as plt


def plot_history(history: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3, label="train (with 0.3 x aux)")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", ms=3, label="val (averaged weights)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * r["train_top1"] for r in history], "o-", ms=3, label="train top-1")
    ax_acc.plot(epochs, [100 * r["val_top1"] for r in history], "o-", ms=3, label="val top-1")
    ax_acc.plot(epochs, [100 * r["val_top5"] for r in history], "o-", ms=3, label="val top-5")
    ax_acc.set(xlabel="epoch", ylabel="%", title="accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
