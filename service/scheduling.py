"""Scheduler: a request's rows go to each member it asks for, all on one device executor.

Admission happens before the images are decoded (`admit`): first by time (service/admission.py:
the request's estimated wait and completion under the fair cut), then all or none across the
members' memory caps. Past capacity a request is refused before it costs preprocessing, and no
admitted request waits outside the bound.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np

from service import admission, metrics
from service.admission import CostModel, Estimate
from service.batching import Batcher, Result
from service.errors import BadRequest, Overloaded


class Scheduler:
    def __init__(self, batchers: list[Batcher], *, cost: CostModel | None = None, max_wait_s: float = math.inf) -> None:
        if not batchers:
            raise ValueError("a scheduler needs at least one model")
        self.batchers = {b.name: b for b in batchers}  # ensemble order; the first is the primary
        self.cost = cost  # None: admission by the memory caps only
        self.max_wait_s = max_wait_s

    @property
    def names(self) -> list[str]:
        return list(self.batchers)

    @property
    def failure(self) -> Exception | None:
        """Why no request can ever run again (a device's dispatch loop crashed), or None."""
        return next((b.executor.error for b in self.batchers.values() if b.executor.error is not None), None)

    def members(self, count: int) -> list[str]:
        """The first `count` members, the paper's ensemble order (count 1 = the primary)."""
        if not 1 <= count <= len(self.batchers):
            raise BadRequest(f"models must be between 1 and {len(self.batchers)}, got {count}")
        return self.names[:count]

    def estimate(self, rows: int, members: list[str], *, prepare_s: float = 0.0) -> Estimate:
        """The request's estimated wait and service time, given everything admitted so far;
        `prepare_s`: until its rows are ready (decoding)."""
        first = self.batchers[members[0]]
        backlog = [(b.name, left) for b in self.batchers.values() for left in b.backlog()]
        return admission.estimate(
            rows, members, backlog, self.cost or CostModel(), slots=first.executor.slots,
            max_batch_size=first.max_batch_size, prepare_s=prepare_s,
        )

    def check(
        self, rows: int, members: list[str], *, deadline: float | None, now: float, prepare_s: float = 0.0
    ) -> Estimate | None:
        """Raise what admission by time says (`TooCostly`, `Overloaded`), else the estimate."""
        if self.cost is None:
            return None
        est = self.estimate(rows, members, prepare_s=prepare_s)
        admission.decide(est, now=now, deadline=deadline, max_wait_s=self.max_wait_s)
        return est

    def admit(
        self, rows: int, members: list[str], *, deadline: float | None = None, prepare_s: float = 0.0
    ) -> Reservation:
        """Admit by time, then reserve room for `rows` in every member's queue, or raise and reserve none."""
        now = asyncio.get_running_loop().time()
        est = self.check(rows, members, deadline=deadline, now=now, prepare_s=prepare_s)
        batchers = [self.batchers[m] for m in members]
        full = [b.name for b in batchers if not b.fits(rows)]
        if full:
            raise Overloaded(f"queue full for {', '.join(full)}; retry later")
        reservation = Reservation(rows, est, now)
        try:
            for b in batchers:
                b.reserve(rows)
                reservation.batchers.append(b)
        except BaseException:  # NotReady from one member (draining): give back the others' room
            reservation.release()
            raise
        if est is not None:
            metrics.ESTIMATED_WAIT.observe(est.wait_s)
            metrics.ESTIMATED_COMPLETION.observe(est.completion_s)
        return reservation

    def start(self) -> None:
        for b in self.batchers.values():
            b.start()

    async def drain(self) -> None:
        await asyncio.gather(*(b.drain() for b in self.batchers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))


class Reservation:
    """Room held in some members' queues for one admitted request's rows; a context manager that
    gives back whatever was not used, on every path."""

    def __init__(self, rows: int, estimate: Estimate | None = None, admitted: float = 0.0) -> None:
        self.rows = rows
        self.estimate = estimate
        self.admitted = admitted  # loop.time() of admission
        self.batchers: list[Batcher] = []

    def submit(self, rows: np.ndarray, *, deadline: float | None) -> list[asyncio.Future[Result]]:
        """Queue the prepared rows in the held room: one future per member, in member order."""
        if len(rows) != self.rows:
            raise ValueError(f"{self.rows} rows were admitted, {len(rows)} came")
        futures = []
        try:
            while self.batchers:  # a member that fails to take its rows keeps its room for release()
                futures.append(self.batchers[0].submit(rows, deadline=deadline, reserved=True))
                self.batchers.pop(0)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return futures

    async def run(self, rows: np.ndarray, *, deadline: float | None) -> list[Result]:
        """Queue the prepared rows in the held room; one `Result` per member."""
        futures = self.submit(rows, deadline=deadline)
        try:
            results = list(await asyncio.gather(*futures))
        finally:
            for f in futures:  # one member failed or the client left: free the others' rows
                f.cancel()
        self.observe()
        return results

    def observe(self) -> None:
        """Record the actual completion next to the estimate (the request's rows all came back)."""
        if self.estimate is None:
            return
        actual = asyncio.get_running_loop().time() - self.admitted
        metrics.ACTUAL_COMPLETION.observe(actual)
        if self.estimate.completion_s > 0:
            metrics.ESTIMATE_RATIO.observe(actual / self.estimate.completion_s)

    def release(self) -> None:
        for b in self.batchers:
            b.release(self.rows)
        self.batchers = []

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
