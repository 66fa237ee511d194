"""Admission by estimated time: the cost model (seconds per row of each member) and the decision.

A request is admitted when its estimated completion fits its deadline and its estimated wait fits
`max_queue_wait_ms`; otherwise it gets 503 + Retry-After from the estimate, or a 422 saying how
long it would take when even an idle device could not finish it in time (issue 12 item 3).
Pure arithmetic: the clock and the queue state are arguments, so tests need no sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from service import metrics
from service.errors import Overloaded, TooCostly


class CostModel:
    """Seconds one run slot spends per row of each member: seeded at warm-up, then a moving
    average of real batches (a batch of n rows taking t seconds says t / n)."""

    def __init__(self, *, weight: float = 0.1, default_s: float = 0.05) -> None:
        if not 0 < weight <= 1:
            raise ValueError("weight must be in (0, 1]")
        self.weight = weight
        self.default_s = default_s  # before any measurement: about one CPU core's GoogLeNet row
        self._per_row: dict[str, float] = {}

    def seed(self, member: str, seconds_per_row: float) -> None:
        self._per_row[member] = seconds_per_row
        metrics.SECONDS_PER_ROW.labels(member).set(seconds_per_row)

    def observe(self, member: str, rows: int, seconds: float) -> None:
        sample = seconds / rows
        old = self._per_row.get(member)
        self.seed(member, sample if old is None else old + self.weight * (sample - old))

    def per_row(self, member: str) -> float:
        return self._per_row.get(member, self.default_s)


@dataclass(frozen=True)
class Estimate:
    """One request's estimated time on its device."""

    wait_s: float  # work ahead of it under the fair cut, spread over the slots
    service_s: float  # its own work, as an idle device would run it

    @property
    def completion_s(self) -> float:
        return self.wait_s + self.service_s


def estimate(
    rows: int, members: Iterable[str], backlog: Iterable[tuple[str, int]], cost: CostModel, *,
    slots: int, max_batch_size: int,
) -> Estimate:
    """Under the fair cut a request of k rows waits for about min(remaining, k) rows of every
    queued request (`backlog`: member, remaining rows), over the slots; its own rows then run as
    ceil(k / max_batch_size) batches per member, as many at once as there are slots."""
    members = list(members)
    ahead = sum(min(left, rows) * cost.per_row(m) for m, left in backlog)
    own = rows * sum(cost.per_row(m) for m in members)
    batches = len(members) * math.ceil(rows / max_batch_size)
    return Estimate(ahead / slots, own / max(1, min(slots, batches)))


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
