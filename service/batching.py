"""Dynamic batcher for one model: a bounded queue counted in rows, batches cut from it fairly.

It knows nothing of images or ONNX: it is handed `run_batch(rows) -> outputs` (Ray Serve and
BentoML take a callable the same way) and runs it in its own threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import metrics
from service.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded

log = logging.getLogger(__name__)
RunBatch = Callable[[np.ndarray], np.ndarray]
_seq = itertools.count()


@dataclass(frozen=True)
class Result:
    """What a request's future gets: its rows' outputs, in order, and where its time went."""

    outputs: np.ndarray
    queue_s: float  # from admission to its first batch starting
    run_s: float  # from its first batch starting to its last batch ending


@dataclass(eq=False)
class _Job:
    """One request's rows for this model; its future gets all their outputs, in order."""

    rows: np.ndarray
    future: asyncio.Future[Result]
    deadline: float | None  # loop.time() after which the rows are not worth evaluating
    enqueued: float
    seq: int = field(default_factory=lambda: next(_seq))
    sent: int = 0  # rows handed to batches so far
    done: int = 0  # rows whose outputs came back
    first_sent: float = 0.0
    out: np.ndarray | None = None

    @property
    def waiting(self) -> int:
        return len(self.rows) - self.sent


@dataclass
class _Slice:
    job: _Job
    start: int
    stop: int


class Batcher:
    """Batches rows of many requests into calls of `run_batch`, at most `concurrency` at a time.

    Timing contract:
    - A batch opens when a row waits and one of the `concurrency` slots is free. It closes when
      `max_batch_size` rows wait, or when the oldest waiting row has waited `max_delay_s`.
    - Rows are taken least-served request first, so a request larger than a batch is split into
      chunks interleaved with the others: a 1-row request never waits behind a 1008-row one.
      Below capacity a large request gets whatever the small ones leave; in overload the small
      ones win and the queue bound and deadlines shed the rest (503/504), never a silent wait.
    - Admission is all or nothing: a request whose rows do not fit in `max_queue_rows` gets
      `Overloaded` at once and nothing of it is queued. Room can be reserved before the rows
      exist (`reserve`, while images decode), so the bound covers every admitted request's wait.
      A request larger than the whole bound (144 crops x 7 images) is admitted into an empty
      queue only: it runs when the model is idle and is the first shed under load.
    Every future is resolved on every path: with the outputs; `InferenceFailed` if its batch
    raised (only that batch's requests fail); `DeadlineExceeded` if its deadline passed before
    its rows ran (they are then never evaluated); `NotReady` when the batcher stops. A cancelled
    future (client gone) is dropped before its rows cost an evaluation. `drain` waits for reserved
    rows too: a request admitted before shutdown began is answered.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        name: str,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_rows: int,
        concurrency: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queue_rows < 1 or concurrency < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size, max_queue_rows and concurrency must be >= 1, max_delay_s >= 0")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self._run_batch = run_batch
        self._jobs: list[_Job] = []
        self._queued_rows = 0  # rows waiting for a batch
        self._reserved_rows = 0  # room held for rows still being prepared
        self._slots = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"batch-{name}")
        self._arrived = asyncio.Event()
        self._changed = asyncio.Event()  # a batch was cut or finished: lets drain() wait without polling
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._accepting = False
        self._queue_gauge = metrics.QUEUE_ROWS.labels(name)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def reserved_rows(self) -> int:
        return self._reserved_rows

    @property
    def _held(self) -> int:  # what the bound counts: rows queued and room reserved
        return self._queued_rows + self._reserved_rows

    def fits(self, rows: int) -> bool:
        return self._held == 0 or self._held + rows <= self.max_queue_rows

    def start(self) -> None:
        self._accepting = True
        self._loop_task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"batcher-{self.name}")

    def reserve(self, rows: int) -> None:
        """Hold room for `rows` not yet prepared; `submit(..., reserved=True)` or `release` ends the hold.

        Raises `NotReady` or `Overloaded` as `submit` would, so a request is refused before it costs work.
        """
        self._admit(rows)
        self._reserved_rows += rows
        self._show_queue()

    def release(self, rows: int) -> None:
        """Give back reserved room whose rows will never come (a bad image, a client gone)."""
        self._reserved_rows -= rows
        self._show_queue()
        self._changed.set()

    def submit(
        self, rows: np.ndarray, *, deadline: float | None = None, reserved: bool = False
    ) -> asyncio.Future[Result]:
        """Queue `rows` [k, ...]; the future gets a `Result`. Raises `Overloaded` if they don't fit.

        `reserved`: room for these rows was reserved, so they are taken even while draining.
        """
        if len(rows) == 0:
            raise ValueError("no rows to run")
        if reserved:
            if self._loop_task is None or self._loop_task.done():  # stopped: nothing would ever run them
                raise NotReady(f"model {self.name} stopped before the request ran")
            self._reserved_rows -= len(rows)
        else:
            self._admit(len(rows))
        loop = asyncio.get_running_loop()
        job = _Job(rows, loop.create_future(), deadline, loop.time())
        self._jobs.append(job)
        self._set_queued(self._queued_rows + len(rows))
        self._arrived.set()
        self._changed.set()
        return job.future

    def _admit(self, rows: int) -> None:
        if not self._accepting:
            raise NotReady(f"model {self.name} is not accepting requests")
        if not self.fits(rows):
            raise Overloaded(f"model {self.name} has {self._held} rows queued; the limit is {self.max_queue_rows}")

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_rows()
            await self._slots.acquire()
            # The window starts at the oldest waiting row, not at this slot's release.
            while self._accepting and self._queued_rows < self.max_batch_size and self._jobs:
                remaining = self._jobs[0].enqueued + self.max_delay_s - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(loop.time())
            self._changed.set()
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _wait_for_rows(self) -> None:
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()

    def _take(self, now: float) -> list[_Slice]:
        """Cut the next batch: drop gone and expired jobs, then serve the least-served first."""
        for job in [j for j in self._jobs if j.future.done() or (j.deadline is not None and now >= j.deadline)]:
            self._drop(job)
            if not job.future.done():
                job.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
        batch, space = [], self.max_batch_size
        for job in sorted(self._jobs, key=lambda j: (j.sent, j.seq)):
            if space == 0:
                break
            n = min(job.waiting, space)
            batch.append(_Slice(job, job.sent, job.sent + n))
            metrics.QUEUE_WAIT.labels(self.name).observe(now - job.enqueued)
            if job.sent == 0:
                job.first_sent = now
            job.sent += n
            space -= n
            if job.waiting == 0:
                self._jobs.remove(job)
        self._set_queued(self._queued_rows - (self.max_batch_size - space))
        return batch

    async def _run(self, batch: list[_Slice]) -> None:
        loop = asyncio.get_running_loop()
        try:
            parts = [s.job.rows[s.start : s.stop] for s in batch]
            rows = sum(len(p) for p in parts)
            started = time.perf_counter()
            out = await loop.run_in_executor(self._executor, self._call, parts)
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
            self._slots.release()
            self._changed.set()
        metrics.INFERENCE_DURATION.labels(self.name).observe(time.perf_counter() - started)
        metrics.BATCHES.labels(self.name, "ok").inc()
        metrics.BATCH_ROWS.labels(self.name).observe(rows)
        metrics.BATCH_FILL.labels(self.name).observe(rows / self.max_batch_size)
        metrics.EVALUATED_ROWS.labels(self.name).inc(rows)
        offset, now = 0, loop.time()
        for s in batch:
            n = s.stop - s.start
            self._deliver(s, out[offset : offset + n], now)
            offset += n

    def _call(self, parts: list[np.ndarray]) -> np.ndarray:
        # In the batch thread: copying a large batch together would stall the event loop.
        return self._run_batch(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _deliver(self, s: _Slice, out: np.ndarray, now: float) -> None:
        job = s.job
        if job.future.done():
            return
        if job.out is None:
            job.out = np.empty((len(job.rows), *out.shape[1:]), dtype=out.dtype)
        job.out[s.start : s.stop] = out
        job.done += s.stop - s.start
        if job.done == len(job.rows):
            job.future.set_result(Result(job.out, job.first_sent - job.enqueued, now - job.first_sent))

    def _fail(self, job: _Job, exc: Exception) -> None:
        if job in self._jobs:
            self._drop(job)
        if not job.future.done():
            job.future.set_exception(exc)

    def _drop(self, job: _Job) -> None:
        self._jobs.remove(job)
        self._set_queued(self._queued_rows - job.waiting)

    def _set_queued(self, rows: int) -> None:
        self._queued_rows = rows
        self._show_queue()

    def _show_queue(self) -> None:
        self._queue_gauge.set(self._held)

    async def drain(self) -> None:
        """Stop admitting, then wait until every admitted row has run (graceful shutdown)."""
        self._accepting = False
        self._arrived.set()  # no more rows can come: close the open window now
        while True:
            self._changed.clear()
            if not (self._jobs or self._running or self._reserved_rows):
                return
            if self._running:
                await asyncio.wait(set(self._running))
            else:
                await self._changed.wait()

    async def stop(self) -> None:
        """Stop now: fail whatever is still queued or running with `NotReady`."""
        self._accepting = False
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        for job in list(self._jobs):
            self._fail(job, NotReady(f"model {self.name} stopped before the request ran"))
        self._executor.shutdown(wait=False, cancel_futures=True)
