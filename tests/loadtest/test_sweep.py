"""loadtest/sweep.py: the offered rates of a sweep, each step's verdict, and the capacity (knee)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import Corpus, generate_jpegs
from loadtest.mix import Mix
from loadtest.sweep import rates, run_sweep, verdict
from tests.conftest import serve


def test_additive_rates() -> None:
    assert rates(10, step=5, factor=None, steps=4) == [10, 15, 20, 25]


def test_multiplicative_rates() -> None:
    assert rates(2, step=None, factor=2, steps=4) == [2, 4, 8, 16]


def test_one_step_is_the_start() -> None:
    assert rates(7.5, step=None, factor=1.5, steps=1) == [7.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 0, "step": 1, "factor": None, "steps": 3}, "positive start rate and at least one step"),
        ({"start": 1, "step": 1, "factor": None, "steps": 0}, "positive start rate and at least one step"),
        ({"start": 1, "step": 1, "factor": 2, "steps": 3}, "exactly one of step"),
        ({"start": 1, "step": None, "factor": None, "steps": 3}, "exactly one of step"),
        ({"start": 1, "step": -1, "factor": None, "steps": 3}, "step must be positive"),
        ({"start": 1, "step": None, "factor": 1.0, "steps": 3}, "factor must be > 1"),
    ],
)
def test_bad_sweeps_are_refused(kwargs: dict, message: str) -> None:
    start = kwargs.pop("start")
    with pytest.raises(ValueError, match=message):
        rates(start, **kwargs)


def _step(*, offered: float, served: float, p99: float | None, outcomes: dict[str, int] | None = None,
          arrivals: float | None = None) -> dict:
    outcomes = outcomes or {"200": 100}
    return {
        "offered_rps": offered, "arrivals_rps": arrivals, "throughput_rps": served,
        "requests": sum(outcomes.values()), "outcomes": outcomes,
        "latency_ms": {} if p99 is None else {"p50": p99 / 3, "p99": p99},
        "cdf": [(1.0, 1.0)], "timeline": [{"t": 0}], "latency_by_send": [{"t": 0}],
    }


LIMITS = {"objective_p99_ms": 500.0, "max_error_ratio": 0.01, "min_throughput_ratio": 0.9}


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (_step(offered=10, served=10, p99=200), None),
        (_step(offered=10, served=10, p99=500), None),  # at the objective still meets it
        (_step(offered=10, served=0, p99=None, outcomes={"503": 50}), "no request succeeded"),
        (_step(offered=10, served=10, p99=812.4), "p99 812 ms > 500 ms"),
        (_step(offered=10, served=10, p99=100, outcomes={"200": 98, "503": 1, "timeout": 1}),
         "2.0% errors > 1.0%"),
        (_step(offered=10, served=10, p99=100, outcomes={"200": 99, "503": 1}), None),  # 1% is allowed
        (_step(offered=100, served=80, p99=100), "served 80.0/s of 100.0/s offered"),
        # The arrivals actually drawn (Poisson) are what the server was offered, when known.
        (_step(offered=100, served=80, p99=100, arrivals=85), None),
    ],
)
def test_the_verdict_of_a_step(step: dict, reason: str | None) -> None:
    assert verdict(step, **LIMITS) == reason


def test_the_latency_objective_is_checked_before_errors() -> None:
    step = _step(offered=10, served=5, p99=900, outcomes={"200": 50, "503": 50})
    assert verdict(step, **LIMITS) == "p99 900 ms > 500 ms"


BASE = LoadSpec(url="http://127.0.0.1:1", mix=Mix.parse("1x1"), concurrency=4, duration_s=5)


def test_the_sweep_stops_at_the_first_broken_step_and_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    served = {10.0: 10.0, 20.0: 19.5, 40.0: 39.0, 80.0: 50.0, 160.0: 55.0}
    asked: list[LoadSpec] = []

    def run(spec: LoadSpec) -> dict:
        asked.append(spec)
        return _step(offered=spec.rate, served=served[spec.rate], p99=100)

    result = run_sweep(BASE, list(served), run, objective_p99_ms=500)
    assert [s.rate for s in asked] == [10.0, 20.0, 40.0, 80.0]  # 160 is never offered
    assert all(s.concurrency is None and s.loop_kind == "open" and s.mix == BASE.mix for s in asked)
    assert result["capacity_rps"] == 39.0
    assert result["broke_at"] == {"offered_rps": 80.0, "reason": "served 50.0/s of 80.0/s offered"}
    assert [s["verdict"] for s in result["steps"]] == ["ok", "ok", "ok", "served 50.0/s of 80.0/s offered"]
    assert result["objective"] == {"p99_ms": 500, "max_error_ratio": 0.01, "min_throughput_ratio": 0.9}
    assert not {"cdf", "timeline", "latency_by_send"} & set(result["steps"][0])  # per-second series: out
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("offered    80.00/s  served    50.00/s")


def test_a_sweep_that_never_breaks_has_no_breaking_point() -> None:
    result = run_sweep(BASE, [5.0, 10.0], lambda spec: _step(offered=spec.rate, served=spec.rate, p99=50),
                       objective_p99_ms=500)
    assert result["capacity_rps"] == 10.0 and result["broke_at"] is None and len(result["steps"]) == 2


def test_a_sweep_broken_at_its_first_step_has_no_capacity() -> None:
    result = run_sweep(BASE, [5.0, 10.0], lambda spec: _step(offered=spec.rate, served=spec.rate, p99=900),
                       objective_p99_ms=500)
    assert result["capacity_rps"] is None and result["broke_at"]["offered_rps"] == 5.0


def test_the_knee_is_the_best_throughput_of_the_passing_steps() -> None:
    served = {10.0: 10.0, 11.0: 9.95}  # a noisy second step serves a little less and still passes

    def run(spec: LoadSpec) -> dict:
        return _step(offered=spec.rate, served=served[spec.rate], p99=50)

    result = run_sweep(BASE, list(served), run, objective_p99_ms=500)
    assert result["capacity_rps"] == 10.0


def test_a_sweep_of_real_runs_against_the_service(tiny_repo: Path) -> None:
    corpus = Corpus(generate_jpegs(2, width=64, height=48), "generated")
    with serve(tiny_repo, models=1, instances=1) as live:
        base = LoadSpec(url=live.url, mix=Mix.parse("1x1"), rate=1.0, duration_s=None, requests=4,
                        scrape_metrics=False)
        result = run_sweep(base, [20.0, 40.0], lambda spec: run_load_sync(spec, corpus),
                           objective_p99_ms=30_000, min_throughput_ratio=0.0)  # 4 requests: no rate
    assert [s["offered_rps"] for s in result["steps"]] == [20.0, 40.0]
    assert all(s["outcomes"] == {"200": 4} and s["verdict"] == "ok" for s in result["steps"])
    assert result["broke_at"] is None and result["capacity_rps"] > 0
