"""What a load run records: latency histograms (HdrHistogram) per mode and outcome, outcomes by
status, a per-second timeline by completion (throughput), and the latency of answered requests by
second of their scheduled send (does waiting grow while the load lasts?); bounded memory however
long the run."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

# Microseconds, 1 us .. 1 h, 3 significant digits: 0.1% resolution at any latency.
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# Outcomes that are not HTTP statuses.
CONNECT_ERROR, TIMEOUT, NOT_SENT = "connect_error", "timeout", "not_sent"
# A run's per-second series: for plots, left out of the JSON summaries.
PER_SECOND = ("cdf", "timeline", "latency_by_send")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


def is_ok(outcome: str) -> bool:
    return outcome.isdigit() and 200 <= int(outcome) < 300


def latency_summary(histogram: HdrHistogram) -> dict[str, float]:
    """Percentiles, mean and max in ms (empty dict when nothing was recorded)."""
    if histogram.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["mean"] = histogram.get_mean_value() / 1000
    out["max"] = histogram.get_max_value() / 1000
    return out


def cdf(histogram: HdrHistogram, points: int = 200) -> list[tuple[float, float]]:
    """(latency ms, fraction of requests at or below it), at most `points` steps."""
    total = histogram.get_total_count()
    if total == 0:
        return []
    steps = [(v.value_iterated_to / 1000, v.total_count_to_this_value / total)
             for v in histogram.get_recorded_iterator()]
    if len(steps) <= points:
        return steps
    picked = {round(i * (len(steps) - 1) / (points - 1)) for i in range(points)}  # first and last included
    return [steps[i] for i in sorted(picked)]


@dataclass
class _Second:
    ok: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0


@dataclass
class Recorder:
    """Records completions whose send was scheduled at or after `start` (warm-up excluded)."""

    start: float
    histograms: dict[tuple[str, bool], HdrHistogram] = field(default_factory=dict)  # (mode, ok)
    outcomes: Counter[str] = field(default_factory=Counter)
    timeline: dict[int, _Second] = field(default_factory=dict)
    by_send: dict[int, _Second] = field(default_factory=dict)  # answered (2xx) requests only
    last_done: float = 0.0
    window: HdrHistogram = field(default_factory=new_histogram)  # since the last progress line

    def record(self, mode: str, scheduled: float, done: float, outcome: str) -> None:
        if scheduled < self.start:
            return
        latency_us = max(_LOWEST_US, min(_HIGHEST_US, round((done - scheduled) * 1e6)))
        ok = is_ok(outcome)
        key = (mode, ok)
        if key not in self.histograms:
            self.histograms[key] = new_histogram()
        self.histograms[key].record_value(latency_us)
        self.outcomes[outcome] += 1
        second = self.timeline.setdefault(int(done - self.start), _Second())
        if ok:
            second.ok += 1
            self.window.record_value(latency_us)
        else:
            second.errors += 1
        second.latency_sum_ms += latency_us / 1000
        second.latency_max_ms = max(second.latency_max_ms, latency_us / 1000)
        if ok:  # a fast 503 says nothing of how long admitted requests wait
            sent = self.by_send.setdefault(int(scheduled - self.start), _Second())
            sent.ok += 1
            sent.latency_sum_ms += latency_us / 1000
            sent.latency_max_ms = max(sent.latency_max_ms, latency_us / 1000)
        self.last_done = max(self.last_done, done)

    def merged(self, *, ok: bool, mode: str | None = None) -> HdrHistogram:
        out = new_histogram()
        for (m, good), histogram in self.histograms.items():
            if good == ok and mode in (None, m):
                out.add(histogram)
        return out

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def ok(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if is_ok(outcome))

    def take_window(self) -> HdrHistogram:
        window, self.window = self.window, new_histogram()
        return window

    def timeline_rows(self, *, by_send: bool = False) -> list[dict[str, float]]:
        """One row per second: by completion (all outcomes), or `by_send` (answered requests)."""
        seconds, rows = self.by_send if by_send else self.timeline, []
        for t in range(max(seconds, default=-1) + 1):
            s = seconds.get(t, _Second())
            n = s.ok + s.errors
            rows.append({"t": t, "ok": s.ok, "errors": s.errors,
                         "mean_ms": s.latency_sum_ms / n if n else 0.0, "max_ms": s.latency_max_ms})
        return rows


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """A result document on disk, the one format every load tool writes (floats as floats, NaN kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=float) + "\n")
    return path
