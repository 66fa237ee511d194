"""Capacity by sweep: raise the offered (open-loop) load step by step until the latency objective
breaks; the knee, the highest throughput that still met it, is the capacity figure."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from loadtest.generator import LoadSpec
from loadtest.recording import PER_SECOND, is_ok


def rates(start: float, *, step: float | None, factor: float | None, steps: int) -> list[float]:
    if start <= 0 or steps < 1:
        raise ValueError("the sweep needs a positive start rate and at least one step")
    if (step is None) == (factor is None):
        raise ValueError("give exactly one of step (additive) and factor (multiplicative)")
    if step is not None:
        if step <= 0:
            raise ValueError("step must be positive")
        return [start + i * step for i in range(steps)]
    if factor is None or factor <= 1:
        raise ValueError("factor must be > 1")
    return [start * factor**i for i in range(steps)]


def verdict(result: dict[str, Any], *, objective_p99_ms: float, max_error_ratio: float,
            min_throughput_ratio: float) -> str | None:
    """Why this step breaks the objective, or None when it meets it."""
    done = max(result["requests"], 1)
    errors = sum(n for outcome, n in result["outcomes"].items() if not is_ok(outcome))
    p99 = result["latency_ms"].get("p99")
    if p99 is None:
        return "no request succeeded"
    if p99 > objective_p99_ms:
        return f"p99 {p99:.0f} ms > {objective_p99_ms:g} ms"
    if errors / done > max_error_ratio:
        return f"{errors / done:.1%} errors > {max_error_ratio:.1%}"
    offered = result.get("arrivals_rps") or result["offered_rps"]
    if result["throughput_rps"] < min_throughput_ratio * offered:
        return f"served {result['throughput_rps']:.1f}/s of {offered:.1f}/s offered"
    return None


def run_sweep(
    base: LoadSpec,
    step_rates: list[float],
    run: Callable[[LoadSpec], dict[str, Any]],
    *,
    objective_p99_ms: float,
    max_error_ratio: float = 0.01,
    min_throughput_ratio: float = 0.9,
) -> dict[str, Any]:
    """Open-loop steps at `step_rates` until one breaks the objective (that step is kept too)."""
    steps, knee, broke = [], None, None
    for rate in step_rates:
        result = run(dataclasses.replace(base, rate=rate, concurrency=None))
        reason = verdict(result, objective_p99_ms=objective_p99_ms, max_error_ratio=max_error_ratio,
                         min_throughput_ratio=min_throughput_ratio)
        result["verdict"] = reason or "ok"
        steps.append(result)
        lat = result["latency_ms"]
        print(f"offered {rate:8.2f}/s  served {result['throughput_rps']:8.2f}/s  p50 {lat.get('p50', 0):8.1f} ms"
              f"  p99 {lat.get('p99', 0):8.1f} ms  {result['verdict']}", file=sys.stderr, flush=True)
        if reason:
            broke = {"offered_rps": rate, "reason": reason}
            break
        knee = max(knee or 0.0, result["throughput_rps"])
    return {
        "objective": {"p99_ms": objective_p99_ms, "max_error_ratio": max_error_ratio,
                      "min_throughput_ratio": min_throughput_ratio},
        "capacity_rps": knee,
        "broke_at": broke,
        "steps": [{k: v for k, v in s.items() if k not in PER_SECOND} for s in steps],
    }
