"""The goals a bench report is judged against (docs/loadtest.md), each with what was measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    goal: str
    measured: str
    met: bool


def latency_trend(result: dict[str, Any]) -> float:
    """Mean latency of answered requests sent in the last third of a run over those sent in its
    middle third: ~1 when the queue is bounded, growing with the run's length when it is not.
    By send time, and 2xx only: fast 503s and the drain after the last send would skew a mean
    by completion either way."""
    rows = [r for r in result["latency_by_send"] if r["ok"]]
    if len(rows) < 3:
        return float("nan")
    third = len(rows) // 3

    def mean(part: list[dict[str, float]]) -> float:
        n = sum(r["ok"] for r in part)
        return sum(r["mean_ms"] * r["ok"] for r in part) / max(n, 1)

    middle, last = mean(rows[third: 2 * third]), mean(rows[2 * third:])
    return last / middle if middle else float("nan")


def floor_ms(report: dict[str, Any]) -> float:
    """One image alone: the model at its fastest single-request layout (batch 1, one stream) plus
    1-crop preprocessing."""
    single = [p for p in report["model"]["points"] if p["batch"] == 1 and p["streams"] == 1]
    return min(p["ms_per_batch"] for p in single) + report["preprocess_ms"][1]


def evaluate(report: dict[str, Any]) -> list[Goal]:
    """What the report must show, each against numbers of the same run."""
    out = []
    limits = report["limits"]
    one = limits["1x1"]["images_per_s"]
    service, baseline = report["service"], report.get("baseline")
    closed = service["closed"]
    if 1 in closed:
        floor, p50 = floor_ms(report), closed[1]["latency_ms"].get("p50", 0.0)
        out.append(Goal("1 crop, concurrency 1: p50 <= 1.15x the floor (model alone, batch 1, + preprocessing)",
                        f"{p50:.1f} vs {floor:.1f} ms = {p50 / floor:.2f}x", p50 <= 1.15 * floor))
    for c in sorted(c for c in closed if c > 1):
        r = closed[c]
        fraction, errors = r["throughput_rps"] / one, r["requests"] - r["ok"]
        out.append(Goal(f"1 crop, concurrency {c}: >= 95% of the limit, no errors",
                        f"{r['throughput_rps']:.1f} of {one:.1f} img/s = {fraction:.0%}, {errors} errors",
                        fraction >= 0.95 and errors == 0))
    top = max(closed)
    lat = closed[top]["latency_ms"]
    if lat:
        out.append(Goal(f"1 crop, concurrency {top}: p99 <= 1.5x p50",
                        f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms = {lat['p99'] / lat['p50']:.2f}x",
                        lat["p99"] <= 1.5 * lat["p50"]))
    if baseline:
        for c in sorted(set(closed) & set(baseline["closed"])):
            s, b = closed[c], baseline["closed"][c]
            s99, b99 = s["latency_ms"].get("p99", 0.0), b["latency_ms"].get("p99", 0.0)
            out.append(Goal(f"1 crop, concurrency {c}: throughput >= the naive baseline's, p99 below it",
                            f"{s['throughput_rps']:.1f} vs {b['throughput_rps']:.1f} img/s, "
                            f"p99 {s99:.0f} vs {b99:.0f} ms",
                            s["throughput_rps"] >= b["throughput_rps"] and s99 < b99))
    for name, r in service["modes"].items():
        limit = limits[name]["images_per_s"]
        fraction = r["throughput_rps"] / limit
        out.append(Goal(f"{name}: >= 95% of its own limit",
                        f"{r['throughput_rps']:.3g} of {limit:.3g} img/s = {fraction:.0%}", fraction >= 0.95))
    over = service["overload"]
    bound_ms = report.get("max_queue_wait_ms")
    if over["latency_ms"] and bound_ms:
        service_ms = floor_ms(report)
        p99 = over["latency_ms"]["p99"]
        out.append(Goal("150% open loop: admitted 1-crop p99 <= max_queue_wait_ms + the service time",
                        f"{p99:.0f} vs {bound_ms:.0f} + {service_ms:.0f} ms", p99 <= bound_ms + service_ms))
    shed = over.get("error_latency_ms") or {}
    if shed:
        out.append(Goal("150% open loop: shed requests answered in < 50 ms (p99)",
                        f"p50 {shed['p50']:.1f} ms, p99 {shed['p99']:.1f} ms", shed["p99"] < 50))
    ratio = (over.get("server") or {}).get("estimate_ratio") or {}
    if ratio.get("p50") is not None:
        out.append(Goal("the estimate's error (actual / estimated completion): reported",
                        f"p50 {ratio['p50']:.2f}, p90 {ratio['p90']:.2f} (150% open loop)", True))
    mixed = service.get("mixed")
    if mixed and service["at_70"]["latency_ms"] and mixed["light"]["latency_ms"]:
        alone, beside = service["at_70"]["latency_ms"]["p99"], mixed["light"]["latency_ms"]["p99"]
        heavy = mixed.get("heavy") or {}
        done = heavy.get("ok", 0) == heavy.get("requests", -1) and heavy.get("ok", 0) > 0
        out.append(Goal("1 crop at 70% + one 144x7 client: 1-crop p99 <= 1.5x without it, the 144x7 completes",
                        f"p99 {beside:.0f} vs {alone:.0f} ms = {beside / alone:.2f}x; 144x7: "
                        f"{heavy.get('ok', 0)} of {heavy.get('requests', 0)} answered 200",
                        beside <= 1.5 * alone and done))
    return out
