"""The ensemble: a request's rows fanned out to each member it asks for, admitted first.

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
from service.batching import fair_cut
from service.batching.queue import MemberQueue, Result
from service.errors import BadRequest, Overloaded


class Ensemble:
    """The members' queues, in the paper's ensemble order (the first is the primary)."""

    def __init__(
        self, queues: list[MemberQueue], *, cost: CostModel | None = None, max_wait_s: float = math.inf
    ) -> None:
        if not queues:
            raise ValueError("an ensemble needs at least one model")
        self.queues = {q.name: q for q in queues}
        self.cost = cost  # None: admission by the memory caps only
        self.max_wait_s = max_wait_s

    @property
    def names(self) -> list[str]:
        return list(self.queues)

    @property
    def failure(self) -> Exception | None:
        """Why no request can ever run again (a device's dispatch loop crashed), or None."""
        return next((q.device.error for q in self.queues.values() if q.device.error is not None), None)

    def members(self, count: int) -> list[str]:
        """The first `count` members, the paper's ensemble order (count 1 = the primary)."""
        if not 1 <= count <= len(self.queues):
            raise BadRequest(f"models must be between 1 and {len(self.queues)}, got {count}")
        return self.names[:count]

    def estimate(self, rows: int, members: list[str], *, prepare_s: float = 0.0) -> Estimate:
        """The request's estimated wait and service time, given everything admitted so far;
        `prepare_s`: until its rows are ready (decoding)."""
        first = self.queues[members[0]]
        backlog = [(q.name, left) for q in self.queues.values() for left in q.backlog()]
        return admission.estimate(
            rows, members, backlog, self.cost or CostModel(), slots=first.device.slots,
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
        queues = [self.queues[m] for m in members]
        full = [q.name for q in queues if not q.fits(rows)]
        if full:
            raise Overloaded(f"queue full for {', '.join(full)}; retry later")
        reservation = Reservation(rows, est, now)
        try:
            for q in queues:
                q.reserve(rows)
                reservation.queues.append(q)
        except BaseException:  # NotReady from one member (draining): give back the others' room
            reservation.release()
            raise
        if est is not None:
            metrics.ESTIMATED_WAIT.observe(est.wait_s)
            metrics.ESTIMATED_COMPLETION.observe(est.completion_s)
        return reservation

    def start(self) -> None:
        for q in self.queues.values():
            q.start()

    async def drain(self) -> None:
        await asyncio.gather(*(q.drain() for q in self.queues.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(q.stop() for q in self.queues.values()))


class Reservation:
    """Room held in some members' queues for one admitted request's rows; a context manager that
    gives back whatever was not used, on every path."""

    def __init__(self, rows: int, estimate: Estimate | None = None, admitted: float = 0.0) -> None:
        self.rows = rows
        self.estimate = estimate
        self.admitted = admitted  # loop.time() of admission
        self.queues: list[MemberQueue] = []

    def submit(self, rows: np.ndarray, *, deadline: float | None) -> list[asyncio.Future[Result]]:
        """Queue the prepared rows in the held room: one future per member, in member order."""
        if len(rows) != self.rows:
            raise ValueError(f"{self.rows} rows were admitted, {len(rows)} came")
        futures = []
        share = fair_cut.Share(asyncio.get_running_loop().time())  # one place in the cut on every member
        try:
            while self.queues:  # a member that fails to take its rows keeps its room for release()
                futures.append(self.queues[0].submit(rows, deadline=deadline, reserved=True, share=share))
                self.queues.pop(0)
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
        for q in self.queues:
            q.release(self.rows)
        self.queues = []

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
