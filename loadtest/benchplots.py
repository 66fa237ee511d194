"""The plots of docs/benchmarks.md: model by batch size, service vs baseline by concurrency, latency
CDFs, and latency over time past capacity. Small PNGs (dpi 80)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _model(report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    layouts: dict[str, list[tuple[int, float]]] = {}
    for p in report["model"]["points"]:
        layouts.setdefault(f"{p['streams']} stream(s) x {p['intra_op_threads']} thread(s)", []).append(
            (p["batch"], p["images_per_s"]))
    for label, points in layouts.items():
        ax.plot(*zip(*points), "o-", label=label)
    ax.set_xscale("log", base=2)
    batches = sorted({p["batch"] for p in report["model"]["points"]})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s")
    ax.set_ylim(bottom=0)
    ax.set_title("(a) The model alone in ONNX Runtime")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _concurrency(report: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for who, style in (("service", "o-"), ("baseline", "s--")):
        runs = (report.get(who) or {}).get("closed")
        if not runs:
            continue
        cs = list(runs)
        left.plot(cs, [runs[c]["throughput_rps"] for c in cs], style, label=who)
        right.plot(cs, [runs[c]["latency_ms"].get("p99") for c in cs], style, label=f"{who} p99")
        right.plot(cs, [runs[c]["latency_ms"].get("p50") for c in cs], style, alpha=0.4, label=f"{who} p50")
    left.axhline(report["limits"]["1x1"]["images_per_s"], color="tab:red", linestyle=":", label="limit")
    cs = list(report["service"]["closed"])
    for ax, title, ylabel in ((left, "Throughput, 1 crop", "images/s"), (right, "Latency, 1 crop", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylim(bottom=0)
    right.set_yscale("log")
    return _save(fig, path)


def _cdf(report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for who in ("service", "baseline"):
        suite = report.get(who)
        if not suite:
            continue
        closed = suite["closed"]
        c = 32 if 32 in closed else max(closed)
        for label, run in ((f"{who}, concurrency {c}", closed[c]), (f"{who}, 70% of capacity", suite["at_70"])):
            if run["cdf"]:
                ax.step(*zip(*run["cdf"]), where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF, 1 crop")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _overload(report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for who in ("service", "baseline"):
        run = (report.get(who) or {}).get("overload")
        rows = [r for r in (run or {}).get("latency_by_send", []) if r["ok"]]
        if rows:
            ax.plot([r["t"] for r in rows], [r["mean_ms"] for r in rows], label=who)
    ax.set_xlabel("time of send (s)")
    ax.set_ylabel("mean latency of 200s (ms)")
    ax.set_title("Past capacity: 150% of the service's capacity offered")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def draw(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "model": _model(report, folder / "model.png"),
        "concurrency": _concurrency(report, folder / "concurrency.png"),
        "cdf": _cdf(report, folder / "cdf.png"),
        "overload": _overload(report, folder / "overload.png"),
    }
