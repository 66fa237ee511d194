"""Results on disk: the JSON document and a PNG report (latency CDF, throughput over time, outcomes,
server batch sizes) for `run`, and throughput vs latency for `sweep`. matplotlib, headless."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: reports are files
import matplotlib.pyplot as plt


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=float) + "\n")
    return path


def _latency_cdf(ax: plt.Axes, curves: dict[str, list[tuple[float, float]]]) -> None:
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.step(xs, ys, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF (ok answers)")
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)


def plot_run(result: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    _latency_cdf(axes[0][0], {"all": result["cdf"]})
    timeline = result["timeline"]
    ax = axes[0][1]
    ts = [row["t"] for row in timeline]
    ax.plot(ts, [row["ok"] for row in timeline], label="ok/s")
    ax.plot(ts, [row["errors"] for row in timeline], label="errors/s", color="tab:red")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("answers per second")
    ax.set_title("Throughput over time")
    twin = ax.twinx()
    twin.plot(ts, [row["mean_ms"] for row in timeline], color="tab:gray", linestyle=":", label="mean latency")
    twin.set_ylabel("mean latency (ms)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = axes[1][0]
    outcomes = result["outcomes"]
    ax.bar(list(outcomes), list(outcomes.values()), color=["tab:green" if k.startswith("2") else "tab:red"
                                                           for k in outcomes])
    ax.set_title("Answers by status")
    ax.set_ylabel("requests")
    ax = axes[1][1]
    server = result.get("server")
    buckets = (server or {}).get("batch_rows_buckets") or []
    if buckets:
        labels, counts, below = [], [], 0.0
        for upper, cumulative in buckets:
            labels.append("more" if math.isinf(upper) else f"<={upper:g}")
            counts.append(cumulative - below)
            below = cumulative
        used = max(i for i, n in enumerate(counts) if n > 0) + 1 if any(counts) else 1
        labels, counts = labels[:used], counts[:used]
        ax.bar(labels, counts)
        ax.set_title(f"Server batch sizes (mean {server['mean_batch_rows'] or 0:.2f} rows)")
        ax.set_xlabel("rows per batch")
        ax.set_ylabel("batches")
    else:
        ax.text(0.5, 0.5, "no server metrics", ha="center", va="center")
        ax.set_axis_off()
    spec = result["spec"]
    load = f"{spec['rate_rps']:g} req/s open loop" if spec["loop"] == "open" else f"concurrency {spec['concurrency']}"
    fig.suptitle(f"{spec['mix']}, {load}: {result['throughput_rps']:.1f} ok/s, "
                 f"p50 {result['latency_ms'].get('p50', 0):.0f} ms, p99 {result['latency_ms'].get('p99', 0):.0f} ms")
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(steps: list[dict[str, Any]], path: Path, *, knee: float | None, objective_ms: float) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    achieved = [s["throughput_rps"] for s in steps]
    ax.plot(achieved, [s["latency_ms"].get("p50", math.nan) for s in steps], "o-", label="p50")
    ax.plot(achieved, [s["latency_ms"].get("p99", math.nan) for s in steps], "s-", label="p99")
    ax.axhline(objective_ms, color="tab:red", linestyle="--", label=f"objective p99 {objective_ms:g} ms")
    if knee is not None:
        ax.axvline(knee, color="tab:gray", linestyle=":", label=f"capacity {knee:.1f} req/s")
    for s, x in zip(steps, achieved):
        ax.annotate(f"{s['offered_rps']:.0f}", (x, s["latency_ms"].get("p99", math.nan)), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    ax.set_yscale("log")
    ax.set_xlabel("throughput (ok answers/s); labels: offered req/s")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Sweep: throughput vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
