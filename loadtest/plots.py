"""Every PNG the load tools draw, matplotlib headless, small (dpi 80): the report of a `run` (latency
CDF, throughput over time, outcomes, server batch sizes), throughput vs latency of a `sweep`, and the
plots of docs/benchmarks.md (model by batch size, service vs baseline by concurrency, latency CDFs,
latency over time past capacity)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: reports are files
import matplotlib.pyplot as plt


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _latency_cdf(ax: plt.Axes, curves: dict[str, list[tuple[float, float]]]) -> None:
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
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
    return _save(fig, path)


def plot_sweep(steps: list[dict[str, Any]], path: Path, *, knee: float | None, objective_ms: float) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    achieved = [s["throughput_rps"] for s in steps]
    ax.plot(achieved, [s["latency_ms"].get("p50", math.nan) for s in steps], "o-", label="p50")
    ax.plot(achieved, [s["latency_ms"].get("p99", math.nan) for s in steps], "s-", label="p99")
    ax.axhline(objective_ms, color="tab:red", linestyle="--", label=f"objective p99 {objective_ms:g} ms")
    if knee is not None:
        ax.axvline(knee, color="tab:gray", linestyle=":", label=f"capacity {knee:.1f} req/s")
    for s, x in zip(steps, achieved, strict=True):
        ax.annotate(f"{s['offered_rps']:.0f}", (x, s["latency_ms"].get("p99", math.nan)), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    ax.set_yscale("log")
    ax.set_xlabel("throughput (ok answers/s); labels: offered req/s")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Sweep: throughput vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _model(report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    layouts: dict[str, list[tuple[int, float]]] = {}
    for p in report["model"]["points"]:
        layouts.setdefault(f"{p['streams']} stream(s) x {p['intra_op_threads']} thread(s)", []).append(
            (p["batch"], p["images_per_s"]))
    for label, points in layouts.items():
        ax.plot(*zip(*points, strict=True), "o-", label=label)
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
                ax.step(*zip(*run["cdf"], strict=True), where="post", label=label)
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


def draw_bench(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """The four plots of docs/benchmarks.md, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "model": _model(report, folder / "model.png"),
        "concurrency": _concurrency(report, folder / "concurrency.png"),
        "cdf": _cdf(report, folder / "cdf.png"),
        "overload": _overload(report, folder / "overload.png"),
    }
