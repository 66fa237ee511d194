"""The goals a bench report is judged against (issue 3 and issue 7), each with what was measured."""

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


def evaluate(report: dict[str, Any]) -> list[Goal]:
    out = []
    limits = report["limits"]
    one = limits["1x1"]["images_per_s"]
    service, baseline = report["service"], report.get("baseline")
    closed = service["closed"]
    for c in sorted(c for c in closed if c >= 8):
        fraction = closed[c]["throughput_rps"] / one
        out.append(Goal(f"1 crop, concurrency {c}: >= 90% of the limit",
                        f"{closed[c]['throughput_rps']:.1f} of {one:.1f} img/s = {fraction:.0%}", fraction >= 0.9))
    at70 = service["at_70"]["latency_ms"]
    if at70:
        ratio = at70["p99"] / at70["p50"]
        out.append(Goal("p99 <= 3x p50 at 70% of capacity (open loop)",
                        f"p50 {at70['p50']:.0f} ms, p99 {at70['p99']:.0f} ms = {ratio:.1f}x", ratio <= 3))
    for name, r in service["modes"].items():
        limit = limits[name]["images_per_s"]
        fraction = r["throughput_rps"] / limit
        out.append(Goal(f"{name}: >= 90% of its own limit",
                        f"{r['throughput_rps']:.3g} of {limit:.3g} img/s = {fraction:.0%}", fraction >= 0.9))
    if baseline:
        s_cap, b_cap = service["capacity_rps"], baseline["capacity_rps"]
        out.append(Goal("throughput >= the naive baseline's (best over the concurrencies)",
                        f"{s_cap:.1f} vs {b_cap:.1f} img/s = {s_cap / b_cap:.2f}x", s_cap >= 0.98 * b_cap))
        c = 32 if 32 in closed and 32 in baseline["closed"] else max(set(closed) & set(baseline["closed"]))
        s99, b99 = closed[c]["latency_ms"].get("p99"), baseline["closed"][c]["latency_ms"].get("p99")
        if s99 and b99:
            out.append(Goal(f"p99 lower than the baseline's at concurrency {c}",
                            f"{s99:.0f} vs {b99:.0f} ms", s99 < b99))
        s_trend, b_trend = latency_trend(service["overload"]), latency_trend(baseline["overload"])
        s_over, b_over = service["overload"]["latency_ms"], baseline["overload"]["latency_ms"]
        out.append(Goal("bounded latency past capacity (150% load): latency stops growing",
                        f"trend {s_trend:.2f}x, p99 {s_over.get('p99', 0):.0f} ms (baseline {b_trend:.2f}x, "
                        f"p99 {b_over.get('p99', 0):.0f} ms)", s_trend < 1.2))
    return out
