"""Admission by estimated time: the cost models (device seconds per batch of each member, decode
seconds per image) and the decision.

A request is admitted when its estimated completion fits its deadline and its estimated wait fits
`max_queue_wait_ms`; otherwise it gets 503 + Retry-After from the estimate, or a 422 saying how
long it would take when even an idle device could not finish it in time (docs/reliability.md).
Pure arithmetic: the clock and the queue state are arguments, so tests need no sleeps.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from service import metrics
from service.errors import Overloaded, TooCostly


class CostModel:
    """Run-slot seconds of a batch of n rows of each member: scale x (fixed + n x per_row).

    The shape (fixed, per_row) is measured at warm-up (service/runtime.py: the best of three runs
    at one row and at the largest batch): on a GPU a batch of 1 costs about what 30 rows do, so a
    per-row cost alone overprices small batches 30-fold. Real batches then set `scale`, the median
    of the last `window` observed-over-predicted ratios, the measurement counting as half a window:
    one slow run (a cold CUDA kernel, 0.7-3 s) moves nothing, a lasting change (a busy host) moves
    it after window / 2 batches.
    """

    def __init__(self, *, window: int = 15, default_s: float = 0.05) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.default_s = default_s  # before any measurement: about one CPU core's GoogLeNet row
        self._shape: dict[str, tuple[float, float]] = {}  # member -> (fixed s, per-row s), unscaled
        self._ratios: dict[str, deque[float]] = {}
        self._scale: dict[str, float] = {}

    def seed(self, member: str, per_row_s: float, fixed_s: float = 0.0) -> None:
        """The measured shape of `member`'s batch cost; forgets what real batches said before."""
        if per_row_s <= 0 or fixed_s < 0:
            raise ValueError("a batch costs a positive time per row and a non-negative fixed time")
        self._shape[member] = (fixed_s, per_row_s)
        # The measurement counts as just over half a window of agreeing batches.
        self._ratios[member] = deque([1.0] * (self.window // 2 + 1), maxlen=self.window)
        self._scale[member] = 1.0
        self._publish(member)

    def observe(self, member: str, rows: int, seconds: float) -> None:
        """A real batch of `rows` rows took `seconds` of a run slot."""
        if member not in self._shape:
            self.seed(member, seconds / rows)
            return
        fixed, per_row = self._shape[member]
        ratios = self._ratios[member]
        ratios.append(seconds / (fixed + rows * per_row))
        self._scale[member] = statistics.median(ratios)
        self._publish(member)

    def _publish(self, member: str) -> None:
        metrics.SECONDS_PER_ROW.labels(member).set(self.per_row(member))
        metrics.BATCH_OVERHEAD.labels(member).set(self.fixed(member))

    def per_row(self, member: str) -> float:
        if member not in self._shape:
            return self.default_s
        return self._scale[member] * self._shape[member][1]

    def fixed(self, member: str) -> float:
        if member not in self._shape:
            return 0.0
        return self._scale[member] * self._shape[member][0]

    def work(self, member: str, rows: int, max_batch_size: int) -> float:
        """Slot seconds of `rows` rows of `member` cut into batches of at most `max_batch_size`."""
        if rows <= 0:
            return 0.0
        return math.ceil(rows / max_batch_size) * self.fixed(member) + rows * self.per_row(member)


class PreprocessCost:
    """Decode-thread seconds per image for each crop count: seeded at start-up on a generated
    photo, then the median of the last `window` real images (a hostile one moves nothing)."""

    def __init__(self, *, window: int = 31, default_s: float = 0.01) -> None:
        self.window, self.default_s = window, default_s
        self._seconds: dict[int, deque[float]] = {}

    def seed(self, crops: int, seconds: float) -> None:
        self._seconds[crops] = deque([seconds], maxlen=self.window)
        metrics.PREPROCESS_COST.labels(str(crops)).set(seconds)

    def observe(self, crops: int, seconds: float) -> None:
        if crops not in self._seconds:
            self.seed(crops, seconds)
            return
        self._seconds[crops].append(seconds)
        metrics.PREPROCESS_COST.labels(str(crops)).set(self.per_image(crops))

    def per_image(self, crops: int) -> float:
        known = self._seconds.get(crops)
        return statistics.median(known) if known else self.default_s


@dataclass(frozen=True)
class Estimate:
    """One request's estimated time on its device."""

    wait_s: float  # work ahead of it under the fair cut, spread over the slots
    service_s: float  # its own work, as an idle device would run it
    prepare_s: float = 0.0  # until its rows are ready: decode threads busy with earlier images, then its own

    @property
    def completion_s(self) -> float:
        # The device drains the work ahead while the images decode.
        return max(self.wait_s, self.prepare_s) + self.service_s


def estimate(
    rows: int, members: Iterable[str], backlog: Iterable[tuple[str, int]], cost: CostModel, *,
    slots: int, max_batch_size: int, prepare_s: float = 0.0,
) -> Estimate:
    """Under the fair cut a request of k rows waits for about min(remaining, k) rows of every
    queued request (`backlog`: member, remaining rows), over the slots, batched together; its own
    rows then run as ceil(k / max_batch_size) batches per member, as many at once as there are slots."""
    members = list(members)
    ahead: dict[str, int] = {}
    for member, left in backlog:
        ahead[member] = ahead.get(member, 0) + min(left, rows)
    wait = sum(cost.work(m, n, max_batch_size) for m, n in ahead.items())
    own = sum(cost.work(m, rows, max_batch_size) for m in members)
    batches = len(members) * math.ceil(rows / max_batch_size)
    return Estimate(wait / slots, own / max(1, min(slots, batches)), prepare_s)


def decide(est: Estimate, *, now: float, deadline: float | None, max_wait_s: float) -> None:
    """Raise `TooCostly` (never feasible), `Overloaded` (not now) or return (admitted)."""
    budget = None if deadline is None else deadline - now
    if budget is not None and est.service_s > budget:
        raise TooCostly(
            f"this request needs about {est.service_s:.1f} s of compute even on an idle device; its "
            f"deadline is {max(budget, 0):.1f} s: send fewer images, crops or models, or a longer deadline_ms"
        )
    over = max(est.wait_s - max_wait_s, 0.0 if budget is None else est.completion_s - budget)
    if over > 0:
        raise Overloaded(
            f"the device is busy: this request would wait about {est.wait_s:.1f} s "
            f"(bound {max_wait_s:.1f} s) and finish in {est.completion_s:.1f} s; retry later",
            retry_after_s=max(1, math.ceil(over)),
        )
