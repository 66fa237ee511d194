"""One member's queue: admitted requests' rows, room reserved for rows still decoding, and the run
of a batch the device executor cut from it.

It knows nothing of images or ONNX: it is handed `run_batch(rows) -> outputs` (Ray Serve and
BentoML take a callable the same way), and optionally `run_wide` for a batch alone on the device.
Which batch runs when is the executor's (service/executor.py) and the fair cut's
(service/fair_cut.py); whether a request may come in at all is admission's (service/admission.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service import fair_cut, metrics
from service.admission import CostModel
from service.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded
from service.executor import DeviceExecutor

log = logging.getLogger(__name__)
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


@dataclass(eq=False)
class _Job:
    """One request's rows for this model; its future gets all their outputs, in order."""

    rows: np.ndarray
    future: asyncio.Future[Result]
    deadline: float | None  # loop.time() after which the rows are not worth evaluating
    enqueued: float
    row_s: float = 0.0  # device seconds per row (service/fair_cut.py)
    seq: int = field(default_factory=lambda: next(_seq))
    sent: int = 0  # rows handed to batches so far
    done: int = 0  # rows whose outputs came back
    first_sent: float = 0.0
    out: np.ndarray | None = None
    stages: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # batches, copy in, compute, copy out

    @property
    def waiting(self) -> int:
        return len(self.rows) - self.sent


@dataclass
class _Slice:
    job: _Job
    start: int
    stop: int


class Batcher:
    """The queue of one member, served by a device executor with other members' queues.

    Timing contract:
    - A batch opens when a row waits and a run slot of the device is free. It closes when
      `max_batch_size` rows wait, or when the oldest waiting row has waited `max_delay_s`.
    - Rows are taken least-served request first, across members (service/fair_cut.py), so a
      request larger than a batch is split into chunks interleaved with the others.
    - `max_queue_rows` is a memory cap, all or nothing: a request whose rows do not fit gets
      `Overloaded` at once and nothing of it is queued; a larger request is admitted into an empty
      queue only. Room can be reserved before the rows exist (`reserve`, while images decode).
      The primary bound is time, decided before this (service/admission.py).
    Every future is resolved on every path: with the outputs; `InferenceFailed` if its batch
    raised (only that batch's requests fail) or the dispatch loop crashed (every request fails
    at once); `DeadlineExceeded` if its deadline passed before its rows ran (they are then never
    evaluated); `NotReady` when the batcher stops. A cancelled future (client gone) is dropped
    before its rows cost an evaluation. `drain` waits for reserved rows too.
    Without an `executor` the batcher gets a device of its own with `concurrency` slots.
    """

    def __init__(
        self, run_batch: RunBatch, *, name: str, max_batch_size: int, max_delay_s: float, max_queue_rows: int,
        concurrency: int = 1, executor: DeviceExecutor | None = None, run_wide: RunBatch | None = None,
        cost: CostModel | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_rows < 1 or concurrency < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size, max_queue_rows and concurrency must be >= 1, max_delay_s >= 0")
        self.name, self.max_batch_size, self.max_delay_s = name, max_batch_size, max_delay_s
        self.max_queue_rows = max_queue_rows
        self.executor = executor or DeviceExecutor(concurrency, name=name)
        self.can_run_wide, self.cost = run_wide is not None, cost
        self.running: set[asyncio.Task[None]] = set()
        self.accepting = False
        self._run_batch, self._run_wide = run_batch, run_wide
        self.jobs: list[_Job] = []  # admitted, with rows still waiting for a batch
        self._sent: set[_Job] = set()  # every row in batches, not all back yet
        self.queued_rows = 0  # rows waiting for a batch
        self._reservations: Counter[int] = Counter()  # room held for rows still being prepared, per request
        self._changed = asyncio.Event()  # a batch was cut or finished: lets drain() wait without polling
        self._queue_gauge = metrics.QUEUE_ROWS.labels(name)

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
        self.executor.attach(self)

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
        self, rows: np.ndarray, *, deadline: float | None = None, reserved: bool = False
    ) -> asyncio.Future[Result]:
        """Queue `rows` [k, ...]; the future gets a `Result`. Raises `Overloaded` if they don't fit.
        `reserved`: room for these rows was reserved, so they are taken even while draining."""
        if len(rows) == 0:
            raise ValueError("no rows to run")
        if reserved:
            if self.executor.error is not None:
                raise self.executor.error
            if not self.executor.serves(self):  # stopped: nothing would ever run them
                raise NotReady(f"model {self.name} stopped before the request ran")
            self._unreserve(len(rows))
        else:
            self._admit(len(rows))
        loop = asyncio.get_running_loop()
        row_s = (self.cost or _NOMINAL).per_row(self.name) / self.executor.slots  # the fair cut's clock
        job = _Job(rows, loop.create_future(), deadline, loop.time(), row_s)
        self.jobs.append(job)
        self._queue(len(rows))
        self.executor.notify()
        self._changed.set()
        return job.future

    def _admit(self, rows: int) -> None:
        if self.executor.error is not None:
            raise self.executor.error
        if not self.accepting:
            raise NotReady(f"model {self.name} is not accepting requests")
        if not self.fits(rows):
            raise Overloaded(f"model {self.name} has {self._held} rows queued; the limit is {self.max_queue_rows}")

    def take(self, now: float) -> list[_Slice]:
        """Cut the next batch: drop gone and expired jobs, then serve the least-served first."""
        for job in [j for j in self.jobs if j.future.done() or (j.deadline is not None and now >= j.deadline)]:
            self._drop(job)
            if not job.future.done():
                job.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
        batch = []
        for job, n in fair_cut.cut(self.jobs, self.max_batch_size):
            batch.append(_Slice(job, job.sent, job.sent + n))
            metrics.QUEUE_WAIT.labels(self.name).observe(now - job.enqueued)
            if job.sent == 0:
                job.first_sent = now
            job.sent += n
            if job.waiting == 0:
                self.jobs.remove(job)
                self._sent.add(job)
        self._queue(-sum(s.stop - s.start for s in batch))
        self._changed.set()
        return batch

    async def run(self, batch: list[_Slice], pool: ThreadPoolExecutor, *, wide: bool = False) -> None:
        """Run one batch in a slot of the device's pool and scatter its outputs to their requests."""
        loop = asyncio.get_running_loop()
        try:
            parts = [s.job.rows[s.start : s.stop] for s in batch]
            rows = sum(len(p) for p in parts)
            started = time.perf_counter()
            out, stages = await loop.run_in_executor(pool, self._call, parts, wide)
            if len(out) != rows:
                raise RuntimeError(f"run_batch returned {len(out)} outputs for {rows} rows")
        except asyncio.CancelledError:  # stopped: no caller may hang
            for s in batch:
                self._fail(s.job, NotReady(f"model {self.name} stopped before the request ran"))
            raise
        except Exception as exc:  # only this batch's requests fail; the next batch runs
            log.exception("batch of %d rows failed on model %s", sum(s.stop - s.start for s in batch), self.name)
            metrics.BATCHES.labels(self.name, "error").inc()
            for s in batch:
                self._fail(s.job, InferenceFailed(f"inference failed on model {self.name}: {type(exc).__name__}"))
            return
        finally:
            self._changed.set()
        elapsed = time.perf_counter() - started
        if self.cost is not None and not wide:  # the estimate is of one slot's cost per row
            self.cost.observe(self.name, rows, elapsed)
        metrics.INFERENCE_DURATION.labels(self.name).observe(elapsed)
        metrics.BATCHES.labels(self.name, "ok").inc()
        metrics.BATCH_ROWS.labels(self.name).observe(rows)
        metrics.BATCH_FILL.labels(self.name).observe(rows / self.max_batch_size)
        metrics.EVALUATED_ROWS.labels(self.name).inc(rows)
        offset, now = 0, loop.time()
        for s in batch:
            n = s.stop - s.start
            for i, seconds in enumerate((1.0, *stages)):
                s.job.stages[i] += seconds
            self._deliver(s, out[offset : offset + n], now)
            offset += n

    def _call(self, parts: list[np.ndarray], wide: bool) -> tuple[np.ndarray, tuple[float, float, float]]:
        # In the slot's thread: joining a large batch's rows would stall the event loop.
        started = time.perf_counter()
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        joined = time.perf_counter() - started  # counted as copying in
        done = (self._run_wide if wide and self._run_wide else self._run_batch)(rows)
        if isinstance(done, np.ndarray):
            return done, (joined, 0.0, 0.0)
        return done.outputs, (joined + done.copy_in_s, done.compute_s, done.copy_out_s)

    def _deliver(self, s: _Slice, out: np.ndarray, now: float) -> None:
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
            job.future.set_result(Result(
                job.out, job.first_sent - job.enqueued, now - job.first_sent, int(batches), copy_in, compute, copy_out
            ))

    def _fail(self, job: _Job, exc: Exception) -> None:
        self._sent.discard(job)
        if job in self.jobs:
            self._drop(job)
        if not job.future.done():
            job.future.set_exception(exc)

    def fail_all(self, exc: Exception) -> None:
        """Fail every queued request now (the executor's loop crashed: nothing would run them)."""
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
        self.executor.notify()  # no more rows can come: close the open window now
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
        await self.executor.detach(self)
        for job in list(self.jobs):
            self._fail(job, NotReady(f"model {self.name} stopped before the request ran"))
