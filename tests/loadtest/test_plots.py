"""loadtest/plots.py: the PNGs of a run, a sweep and the benchmark report, drawn headless."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from loadtest import plots
from loadtest.recording import Recorder, cdf, latency_summary


def _result(*, loop: str = "open", server: dict | None = None, ok: bool = True) -> dict:
    recorder = Recorder(start=0.0)
    rng = np.random.default_rng(0)
    for i in range(300):
        sent = i / 100
        recorder.record("1x1", sent, sent + float(rng.uniform(0.005, 0.2)), "200" if ok and i % 10 else "503")
    answered = recorder.merged(ok=True)
    load = {"rate_rps": 100.0} if loop == "open" else {"concurrency": 8}
    return {
        "spec": {"loop": loop, "mix": "1x1", **load},
        "cdf": cdf(answered), "timeline": recorder.timeline_rows(), "outcomes": dict(recorder.outcomes),
        "throughput_rps": recorder.ok / 3, "latency_ms": latency_summary(answered), "server": server,
    }


BUCKETS = [(1, 40.0), (2, 90.0), (4, 90.0), (8, 90.0), (math.inf, 90.0)]  # cumulative, as scraped
SERVER = {"mean_batch_rows": 1.7, "batch_rows_buckets": BUCKETS}


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


def _ink(pixels: np.ndarray) -> int:
    return int((pixels < 200).sum())


@pytest.fixture(autouse=True)
def _no_figure_left_open() -> None:
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("plots")
    return folder, plots.plot_run(_result(server=SERVER), folder / "runs" / "a" / "report.png")


@pytest.fixture(scope="module")
def bench_drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return plots.draw_bench(_report(), tmp_path_factory.mktemp("bench") / "plots")


def test_a_run_report_has_four_panels_in_a_new_folder(run_report: tuple[Path, Path]) -> None:
    folder, path = run_report
    assert path == folder / "runs" / "a" / "report.png"
    assert _image(path).shape == (600, 880)  # 11 x 7.5 in at 80 dpi


def test_a_run_without_server_metrics_says_so(tmp_path: Path, run_report: tuple[Path, Path]) -> None:
    with_server = _image(run_report[1])
    without = _image(plots.plot_run(_result(server=None), tmp_path / "without.png"))
    quadrant = (slice(330, 580), slice(480, 860))  # the batch-size panel, bottom right
    assert _ink(without[quadrant]) < _ink(with_server[quadrant]) / 2


def test_a_closed_loop_run_where_nothing_was_answered_still_draws(tmp_path: Path) -> None:
    result = _result(loop="closed", ok=False)
    assert result["cdf"] == [] and result["latency_ms"] == {}
    empty_server = {"mean_batch_rows": None, "batch_rows_buckets": [(1, 0.0), (math.inf, 0.0)]}
    result["server"] = empty_server
    assert _image(plots.plot_run(result, tmp_path / "report.png")).shape == (600, 880)


def _steps() -> list[dict]:
    return [
        {"offered_rps": r, "throughput_rps": min(r, 40.0), "latency_ms": {"p50": r / 2, "p99": 1.5 * r}}
        for r in (10.0, 20.0, 40.0, 80.0)
    ] + [{"offered_rps": 160.0, "throughput_rps": 0.0, "latency_ms": {}}]  # nothing answered at the top


def test_a_sweep_plot_marks_the_capacity_when_there_is_one(tmp_path: Path) -> None:
    knee = _image(plots.plot_sweep(_steps(), tmp_path / "knee.png", knee=40.0, objective_ms=100.0))
    none = _image(plots.plot_sweep(_steps(), tmp_path / "none.png", knee=None, objective_ms=100.0))
    assert knee.shape == none.shape == (400, 640)
    assert _ink(knee) > _ink(none)


def _suite(scale: float) -> dict:
    closed = {c: {"throughput_rps": scale * min(c, 8) * 10, "latency_ms": {"p50": 5.0 * c, "p99": 9.0 * c},
                  "cdf": [(5.0 * c, 0.5), (9.0 * c, 1.0)]} for c in (1, 4, 16)}
    overload = {"latency_by_send": [{"t": t, "ok": 5, "mean_ms": 100.0 + 50 * t} for t in range(5)]
                + [{"t": 5, "ok": 0, "mean_ms": 0.0}]}
    return {"closed": closed, "at_70": {"cdf": [(3.0, 0.5), (6.0, 1.0)]}, "overload": overload}


def _report(*, baseline: bool = True) -> dict:
    points = [{"streams": s, "intra_op_threads": t, "batch": b, "images_per_s": 10.0 * b / s}
              for s, t in ((1, 2), (2, 1)) for b in (1, 2, 4, 8)]
    return {
        "model": {"points": points}, "limits": {"1x1": {"images_per_s": 80.0}},
        "service": _suite(1.0), "baseline": _suite(0.5) if baseline else None,
    }


def test_the_benchmark_plots_are_the_four_of_the_doc(bench_drawn: dict[str, Path]) -> None:
    drawn = bench_drawn
    assert set(drawn) == {"model", "concurrency", "cdf", "overload"}
    assert {k: p.name for k, p in drawn.items()} == {
        "model": "model.png", "concurrency": "concurrency.png", "cdf": "cdf.png", "overload": "overload.png"
    }
    sizes = {k: _image(p).shape for k, p in drawn.items()}
    assert sizes == {
        "model": (288, 480), "concurrency": (304, 800), "cdf": (304, 480), "overload": (288, 480)
    }


def test_the_benchmark_plots_draw_without_a_baseline(tmp_path: Path, bench_drawn: dict[str, Path]) -> None:
    with_baseline = bench_drawn
    alone = plots.draw_bench(_report(baseline=False), tmp_path / "alone")
    for name in ("concurrency", "cdf", "overload"):
        assert _ink(_image(alone[name])) < _ink(_image(with_baseline[name])), name
