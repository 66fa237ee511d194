"""The latency trend past capacity (loadtest/goals.py): growth of admitted requests' wait, nothing else."""

from __future__ import annotations

import math

from loadtest.goals import latency_trend
from loadtest.recording import Recorder


def trend(latency_s: list[float], *, shed_per_second: int = 0) -> float:
    """A 9-second run: one answered request sent per second with the given latency, plus fast 503s."""
    recorder = Recorder(start=0.0)
    for t, latency in enumerate(latency_s):
        recorder.record("1x1", t + 0.5, t + 0.5 + latency, "200")
        for _ in range(shed_per_second * t):  # more and more of them: the mean of all answers would fall
            recorder.record("1x1", t + 0.5, t + 0.51, "503")
    return latency_trend({"latency_by_send": recorder.timeline_rows(by_send=True)})


def test_a_bounded_queue_is_flat_whatever_is_shed() -> None:
    assert trend([1.0] * 9, shed_per_second=5) == 1.0


def test_a_growing_queue_shows_by_send_time_even_when_answers_finish_late() -> None:
    # sent at t, answered long after the run: by completion these would all land in the last third
    assert trend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]) == (7 + 8 + 9) / (4 + 5 + 6)


def test_too_short_a_run_has_no_trend() -> None:
    assert math.isnan(trend([1.0, 1.0]))
