"""loadtest/recording.py: latency histograms, outcomes, per-second series and the result JSON of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from loadtest.recording import (
    CONNECT_ERROR,
    TIMEOUT,
    Recorder,
    cdf,
    is_ok,
    latency_summary,
    new_histogram,
    write_json,
)


@pytest.mark.parametrize(("outcome", "ok"), [
    ("200", True), ("204", True), ("299", True), ("300", False), ("199", False), ("503", False),
    (TIMEOUT, False), (CONNECT_ERROR, False), ("2xx", False), ("", False),
])
def test_only_2xx_statuses_are_ok(outcome: str, ok: bool) -> None:
    assert is_ok(outcome) is ok


def test_an_empty_histogram_has_no_summary_and_no_cdf() -> None:
    assert latency_summary(new_histogram()) == {} and cdf(new_histogram()) == []


def test_the_summary_is_in_ms_within_the_histograms_resolution() -> None:
    histogram = new_histogram()
    for ms in range(1, 1001):
        histogram.record_value(ms * 1000)
    summary = latency_summary(histogram)
    assert set(summary) == {"p50", "p90", "p99", "p99.9", "mean", "max"}
    expected_ms = {"p50": 500, "p90": 900, "p99": 990, "p99.9": 999, "max": 1000, "mean": 500.5}
    for key, expected in expected_ms.items():
        assert summary[key] == pytest.approx(expected, rel=2e-3), key


def _spread() -> HdrHistogram:
    histogram = new_histogram()
    for us in np.random.default_rng(0).integers(1_000, 5_000_000, 5000):
        histogram.record_value(int(us))
    return histogram


def test_the_cdf_rises_to_one_at_the_slowest_answer() -> None:
    histogram = _spread()
    xs, ys = zip(*cdf(histogram, points=50), strict=True)
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys) and 0 < ys[0]
    assert ys[-1] == 1.0 and xs[-1] == pytest.approx(histogram.get_max_value() / 1000, rel=1e-3)
    assert len(xs) < len(list(histogram.get_recorded_iterator()))  # thinned out


def test_the_cdf_has_at_most_the_asked_points() -> None:
    assert len(cdf(_spread(), points=50)) <= 50


def test_a_single_value_cdf_is_one_step() -> None:
    histogram = new_histogram()
    histogram.record_value(2500)
    assert cdf(histogram) == [(pytest.approx(2.5, rel=1e-3), 1.0)]


def test_warm_up_sends_are_not_recorded() -> None:
    recorder = Recorder(start=10.0)
    recorder.record("1x1", scheduled=9.99, done=10.5, outcome="200")
    assert recorder.completed == 0 and recorder.histograms == {} and recorder.timeline == {}


def test_outcomes_and_histograms_by_mode_and_ok() -> None:
    recorder = Recorder(start=0.0)
    recorder.record("1x1", 0.0, 0.010, "200")
    recorder.record("1x1", 0.0, 0.020, "200")
    recorder.record("10x1", 0.0, 0.100, "200")
    recorder.record("1x1", 0.0, 0.001, "503")
    recorder.record("1x1", 0.0, 30.0, TIMEOUT)
    assert recorder.outcomes == {"200": 3, "503": 1, TIMEOUT: 1}
    assert (recorder.completed, recorder.ok) == (5, 3)
    assert {k: h.get_total_count() for k, h in recorder.histograms.items()} == {
        ("1x1", True): 2, ("10x1", True): 1, ("1x1", False): 2
    }
    assert recorder.merged(ok=True).get_total_count() == 3
    assert recorder.merged(ok=True, mode="1x1").get_total_count() == 2
    assert recorder.merged(ok=False, mode="10x1").get_total_count() == 0
    assert recorder.merged(ok=False).get_max_value() == pytest.approx(30e6, rel=1e-3)
    assert recorder.last_done == 30.0


def test_latencies_are_clamped_to_the_histograms_range() -> None:
    recorder = Recorder(start=0.0)
    recorder.record("1x1", 5.0, 5.0, "200")  # zero: recorded as the 1-us floor
    recorder.record("1x1", 5.0, 5.0 + 7200, "200")  # two hours: recorded at the 1-h ceiling
    histogram = recorder.merged(ok=True)
    assert histogram.get_min_value() == 1
    assert histogram.get_max_value() == pytest.approx(3600e6, rel=1e-3)


def test_the_timeline_is_by_completion_second_and_by_send_counts_answers_only() -> None:
    recorder = Recorder(start=100.0)
    recorder.record("1x1", 100.2, 100.3, "200")  # sent in second 0, done in 0: 100 ms
    recorder.record("1x1", 100.9, 102.4, "200")  # sent in 0, done in 2: 1500 ms
    recorder.record("1x1", 101.0, 102.5, "503")  # an error: by completion only
    rows = recorder.timeline_rows()
    assert [(r["t"], r["ok"], r["errors"]) for r in rows] == [(0, 1, 0), (1, 0, 0), (2, 1, 1)]
    assert rows[1]["mean_ms"] == 0.0 and rows[1]["max_ms"] == 0.0  # a quiet second is still a row
    assert rows[2]["mean_ms"] == pytest.approx(1500) and rows[2]["max_ms"] == pytest.approx(1500)
    (sent,) = recorder.timeline_rows(by_send=True)
    assert (sent["t"], sent["ok"], sent["errors"]) == (0, 2, 0)
    assert sent["mean_ms"] == pytest.approx(800) and sent["max_ms"] == pytest.approx(1500)


def test_no_completions_no_rows() -> None:
    assert Recorder(start=0.0).timeline_rows() == [] == Recorder(start=0.0).timeline_rows(by_send=True)


def test_the_window_holds_answers_since_it_was_last_taken() -> None:
    recorder = Recorder(start=0.0)
    recorder.record("1x1", 0.0, 0.050, "200")
    recorder.record("1x1", 0.0, 0.001, "503")
    first = recorder.take_window()
    recorder.record("1x1", 1.0, 1.2, "200")
    second = recorder.take_window()
    assert first.get_total_count() == 1 and first.get_max_value() == pytest.approx(50_000, rel=1e-3)
    assert second.get_total_count() == 1 and second.get_max_value() == pytest.approx(200_000, rel=1e-3)
    assert recorder.take_window().get_total_count() == 0


def test_write_json_makes_the_folders_and_keeps_floats(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "result.json"
    document = {"p99": np.float32(12.5), "rows": np.int64(3), "missing": math.nan, "name": "run"}
    assert write_json(path, document) == path
    text = path.read_text()
    assert text.endswith("}\n") and "\n \"p99\"" in text  # one-space indent, one document per file
    loaded = json.loads(text)
    assert loaded["p99"] == 12.5 and loaded["rows"] == 3.0 and loaded["name"] == "run"
    assert math.isnan(loaded["missing"])


def test_write_json_replaces_an_earlier_result(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json(path, {"run": 1, "extra": [1, 2]})
    write_json(path, {"run": 2})
    assert json.loads(path.read_text()) == {"run": 2}
