"""One member's queue (service/batching/__init__.py has the contract): admitted requests' rows,
room reserved for rows still decoding, the cut of the next batch and the scatter of its outputs.

It knows nothing of images or ONNX: it holds the member's `run_batch(rows) -> outputs` (Ray Serve
and BentoML take a callable the same way) for the device to call, and optionally `run_wide`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service import metrics
from service.admission import CostModel
from service.batching import fair_cut
from service.errors import DeadlineExceeded, NotReady, Overloaded

_seq = itertools.count()
_NOMINAL = CostModel()  # without a cost model of its own: about one CPU core's GoogLeNet row


class TimedRun(Protocol):
    """What a run may return instead of bare outputs: where the batch's time went (service/runtime.py)."""

    outputs: np.ndarray
    copy_in_s: float
    compute_s: float
    copy_out_s: float


RunBatch = Callable[[np.ndarray], "np.ndarray | TimedRun"]


@dataclass(frozen=True)
class Result:
    """What a request's future gets: its rows' outputs, in order, and where its time went."""

    outputs: np.ndarray
    queue_s: float  # from admission to its first batch starting
    run_s: float  # from its first batch starting to its last batch ending
    batches: int = 1
    copy_in_s: float = 0.0  # summed over its batches: host rows to the device
    compute_s: float = 0.0  # the runs themselves
    copy_out_s: float = 0.0  # outputs back to the host


class Device(Protocol):
    """What a queue needs of the device that serves it (service/batching/device.py)."""

    slots: int
    error: Exception | None

    def serves(self, queue: MemberQueue) -> bool: ...
    def attach(self, queue: MemberQueue) -> None: ...
    async def detach(self, queue: MemberQueue) -> None: ...
    def notify(self) -> None: ...


@dataclass(eq=False)
class _Job:
    """One request's rows for this model; its future gets all their outputs, in order."""

    rows: np.ndarray
    future: asyncio.Future[Result]
    deadline: float | None  # loop.time() after which the rows are not worth evaluating
    enqueued: float
    share: fair_cut.Share  # the request's place in the fair cut, shared with its other members' rows
    row_s: float = 0.0  # device seconds per row, over the slots: what a row adds to `share`
    seq: int = field(default_factory=lambda: next(_seq))
    sent: int = 0  # rows handed to batches so far
    done: int = 0  # rows whose outputs came back
    # Stage clocks: loop.time() is uvloop's millisecond tick, too coarse for a 1 ms queue wait.
    queued_at: float = field(default_factory=time.perf_counter)
    first_sent_at: float = 0.0
    out: np.ndarray | None = None
    stages: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # batches, copy in, compute, copy out

    @property
    def waiting(self) -> int:
        return len(self.rows) - self.sent


@dataclass
class Slice:
    """Rows start..stop-1 of one request, in a batch."""

    job: _Job
    start: int
    stop: int

    @property
    def rows(self) -> np.ndarray:
        return self.job.rows[self.start : self.stop]


class MemberQueue:
    """The queue of one member, served by a device with other members' queues.

    `max_queue_rows` is a memory cap, all or nothing: a request whose rows do not fit gets
    `Overloaded` at once and nothing of it is queued; a larger request is admitted into an empty
    queue only. Room can be reserved before the rows exist (`reserve`, while images decode).
    `drain` waits for reserved rows too.
    """

    def __init__(
        self, run_batch: RunBatch, *, name: str, device: Device, max_batch_size: int, max_delay_s: float,
        max_queue_rows: int, run_wide: RunBatch | None = None, cost: CostModel | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_rows < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size and max_queue_rows must be >= 1, max_delay_s >= 0")
        self.name, self.max_batch_size, self.max_delay_s = name, max_batch_size, max_delay_s
        self.max_queue_rows = max_queue_rows
        self.device = device
        self.run_batch, self.run_wide, self.cost = run_batch, run_wide, cost
        self.running: set[asyncio.Task[None]] = set()  # the device's runs of this queue's batches
        self.accepting = False
        self.jobs: list[_Job] = []  # admitted, with rows still waiting for a batch
        self._sent: set[_Job] = set()  # every row in batches, not all back yet
        self.queued_rows = 0  # rows waiting for a batch
        self._reservations: Counter[int] = Counter()  # room held for rows still being prepared, per request
        self._changed = asyncio.Event()  # a batch was cut or finished: lets drain() wait without polling
        self._queue_gauge = metrics.QUEUE_ROWS.labels(name)

    @property
    def can_run_wide(self) -> bool:
        return self.run_wide is not None

    @property
    def reserved_rows(self) -> int:
        return sum(rows * n for rows, n in self._reservations.items())

    @property
    def oldest(self) -> float:
        return self.jobs[0].enqueued

    @property
    def _held(self) -> int:  # what the memory cap counts: rows queued and room reserved
        return self.queued_rows + self.reserved_rows

    def backlog(self) -> Iterator[int]:
        """Rows each admitted request still has to run here (reserved, queued or in a batch)."""
        for rows, n in self._reservations.items():
            yield from itertools.repeat(rows, n)
        for job in (*self.jobs, *self._sent):
            yield len(job.rows) - job.done

    def fits(self, rows: int) -> bool:
        return self._held == 0 or self._held + rows <= self.max_queue_rows

    def start(self) -> None:
        self.accepting = True
        self.device.attach(self)

    def reserve(self, rows: int) -> None:
        """Hold room for `rows` not yet prepared, until `submit(..., reserved=True)` or `release`;
        raises `NotReady` or `Overloaded` as `submit` would, before the request costs work."""
        self._admit(rows)
        self._reservations[rows] += 1
        self._queue(0)

    def release(self, rows: int) -> None:
        """Give back reserved room whose rows will never come (a bad image, a client gone)."""
        self._unreserve(rows)
        self._queue(0)
        self._changed.set()

    def _unreserve(self, rows: int) -> None:
        self._reservations[rows] -= 1
        if self._reservations[rows] <= 0:
            del self._reservations[rows]

    def submit(
        self, rows: np.ndarray, *, deadline: float | None = None, reserved: bool = False,
        share: fair_cut.Share | None = None,
    ) -> asyncio.Future[Result]:
        """Queue `rows` [k, ...]; the future gets a `Result`. Raises `Overloaded` if they don't fit.
        `reserved`: room for these rows was reserved, so they are taken even while draining.
        `share`: the request's place in the fair cut when its rows also run on other members."""
        if len(rows) == 0:
            raise ValueError("no rows to run")
        if reserved:
            if self.device.error is not None:
                raise self.device.error
            if not self.device.serves(self):  # stopped: nothing would ever run them
                raise NotReady(f"model {self.name} stopped before the request ran")
            self._unreserve(len(rows))
        else:
            self._admit(len(rows))
        loop = asyncio.get_running_loop()
        row_s = (self.cost or _NOMINAL).per_row(self.name) / self.device.slots  # the fair cut's clock
        now = loop.time()
        job = _Job(rows, loop.create_future(), deadline, now, share or fair_cut.Share(now), row_s)
        self.jobs.append(job)
        self._queue(len(rows))
        self.device.notify()
        self._changed.set()
        return job.future

    def _admit(self, rows: int) -> None:
        if self.device.error is not None:
            raise self.device.error
        if not self.accepting:
            raise NotReady(f"model {self.name} is not accepting requests")
        if not self.fits(rows):
            raise Overloaded(f"model {self.name} has {self._held} rows queued; the limit is {self.max_queue_rows}")

    def take(self, now: float) -> list[Slice]:
        """Cut the next batch: drop gone and expired jobs, then serve the least-served first."""
        for job in [j for j in self.jobs if j.future.done() or (j.deadline is not None and now >= j.deadline)]:
            self._drop(job)
            if not job.future.done():
                job.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
        batch, started = [], time.perf_counter()
        for job, n in fair_cut.cut(self.jobs, self.max_batch_size):
            batch.append(Slice(job, job.sent, job.sent + n))
            metrics.QUEUE_WAIT.labels(self.name).observe(started - job.queued_at)
            if job.sent == 0:
                job.first_sent_at = started
            job.sent += n
            job.share.served_s += n * job.row_s
            if job.waiting == 0:
                self.jobs.remove(job)
                self._sent.add(job)
        self._queue(-sum(s.stop - s.start for s in batch))
        self._changed.set()
        return batch

    def deliver(self, batch: list[Slice], out: np.ndarray, stages: tuple[float, float, float]) -> None:
        """Scatter a batch's outputs (rows in batch order) to their requests; `stages`: the batch's
        copy-in, compute and copy-out seconds, counted to each request in it."""
        offset, now = 0, time.perf_counter()
        for s in batch:
            n = s.stop - s.start
            for i, seconds in enumerate((1.0, *stages)):
                s.job.stages[i] += seconds
            self._deliver(s, out[offset : offset + n], now)
            offset += n
        self._changed.set()

    def fail(self, batch: list[Slice], exc: Exception) -> None:
        """The batch did not run: its requests fail with `exc` (their other rows are dropped)."""
        for s in batch:
            self._fail(s.job, exc)
        self._changed.set()

    def _deliver(self, s: Slice, out: np.ndarray, now: float) -> None:
        job = s.job
        if job.future.done():
            self._sent.discard(job)
            return
        if job.out is None:
            job.out = np.empty((len(job.rows), *out.shape[1:]), dtype=out.dtype)
        job.out[s.start : s.stop] = out
        job.done += s.stop - s.start
        if job.done == len(job.rows):
            self._sent.discard(job)
            batches, copy_in, compute, copy_out = job.stages
            queued, running = job.first_sent_at - job.queued_at, now - job.first_sent_at
            job.future.set_result(Result(job.out, queued, running, int(batches), copy_in, compute, copy_out))

    def _fail(self, job: _Job, exc: Exception) -> None:
        self._sent.discard(job)
        if job in self.jobs:
            self._drop(job)
        if not job.future.done():
            job.future.set_exception(exc)

    def fail_all(self, exc: Exception) -> None:
        """Fail every queued request now (the device's loop crashed: nothing would run them)."""
        for job in list(self.jobs):
            self._fail(job, exc)
        self._changed.set()

    def _drop(self, job: _Job) -> None:
        self.jobs.remove(job)
        self._queue(-job.waiting)

    def _queue(self, rows: int) -> None:  # rows more (or fewer) waiting; the gauge shows what the cap counts
        self.queued_rows += rows
        self._queue_gauge.set(self._held)

    async def drain(self) -> None:
        """Stop admitting, then wait until every admitted row has run (graceful shutdown)."""
        self.accepting = False
        self.device.notify()  # no more rows can come: close the open window now
        while True:
            self._changed.clear()
            if not (self.jobs or self.running or self._reservations):
                return
            if self.running:
                await asyncio.wait(set(self.running))
            else:
                await self._changed.wait()

    async def stop(self) -> None:
        """Stop now: fail whatever is still queued or running with `NotReady`."""
        self.accepting = False
        await self.device.detach(self)
        for job in list(self.jobs):
            self._fail(job, NotReady(f"model {self.name} stopped before the request ran"))
