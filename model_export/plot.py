"""The loss/accuracy plot of a training run, drawn from its per-epoch metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; training machines have no display

import matplotlib.pyplot as plt
import matplotlib.ticker


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


def plot_pareto(
    fixed: list[dict[str, Any]], curve: list[dict[str, Any]], calibrated: dict[str, Any], path: str | Path, *,
    images: int,
) -> None:
    """Top-1 error against mean evaluations per image: every fixed rung (crops x first k members), the
    adaptive walk under one margin at every rung (`curve`), and under the calibrated thresholds."""
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=100)
    for crops, marker in ((1, "o"), (10, "s"), (144, "^")):
        points = [r for r in fixed if r["crops"] == crops]
        ax.plot([r["cost"] for r in points], [100 * r["top1_error"] for r in points], marker + "-", ms=5, alpha=0.7,
                label=f"fixed: {crops} crop{'s' if crops > 1 else ''} x 1..{max(r['models'] for r in points)} members")
        for r in points:
            if r["models"] in (1, max(p["models"] for p in points)):
                ax.annotate(f"{crops}x{r['models']}", (r["cost"], 100 * r["top1_error"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    if curve:
        ax.plot([r["mean_evaluations"] for r in curve], [100 * r["top1_error"] for r in curve], "k.--", ms=4,
                label="adaptive: one margin threshold at every rung")
    ax.plot(calibrated["mean_evaluations"], 100 * calibrated["top1_error"], "r*", ms=14,
            label="adaptive: calibrated thresholds (adaptive.json)")
    ax.set_xscale("log")
    ax.set_yscale("log")  # the rungs worth comparing sit at a few percent, the cheap ones at tens
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set(xlabel="mean evaluations per image (crops x members run)", ylabel="top-1 error (%, log scale)",
           title=f"Table 3 per image: {images} held-out images")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
