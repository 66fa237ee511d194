"""The device: one compute budget (run slots) shared by every member's queue, the dispatch loop
that fills the slots, and the runs themselves (service/batching/__init__.py has the contract).

When a slot is free the loop asks the fair cut which queue holds the request of the earliest
virtual start, waits out that queue's batch window, takes the batch and runs it off the event
loop. A batch alone on a CPU device, with nothing else waiting or decoding, takes every slot and
runs on the member's wide session (intra-op threads = cores: ~28 ms instead of ~50 ms for one
image on 2 cores, docs/benchmarks.md). If the loop itself crashes, every queued request and every
later one fails at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

from service import metrics
from service.batching import fair_cut
from service.batching.queue import MemberQueue, Slice
from service.errors import InferenceFailed, NotReady

log = logging.getLogger(__name__)


class Device:
    """`lanes`: one single-thread executor per slot, a batch in slot i runs on lane i (CUDA: each
    lane's thread owns its sessions, service/cuda.py); without them the slots share a thread pool."""

    def __init__(self, slots: int, *, name: str = "device", lanes: Sequence[Executor] | None = None) -> None:
        if slots < 1:
            raise ValueError("a device needs at least one run slot")
        if lanes is not None and len(lanes) != slots:
            raise ValueError(f"{slots} slots need {slots} lanes, got {len(lanes)}")
        self.slots, self.name = slots, name
        self.error: Exception | None = None  # set when the dispatch loop crashed
        self._members: list[MemberQueue] = []
        self._free = asyncio.Semaphore(slots)
        self._own_pool = lanes is None
        self._lanes: list[Executor] = (
            list(lanes) if lanes is not None else [ThreadPoolExecutor(slots, thread_name_prefix=f"run-{name}")] * slots
        )
        self._idle_lanes = list(range(slots))  # which lane each acquired slot runs on
        self._arrived = asyncio.Event()
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def serves(self, member: MemberQueue) -> bool:
        return self._task is not None and not self._task.done() and member in self._members

    def attach(self, member: MemberQueue) -> None:
        """Serve `member` from now on; the first attach starts the dispatch loop."""
        if member not in self._members:
            self._members.append(member)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"device-{self.name}")
            self._task.add_done_callback(self._ended)

    def notify(self) -> None:
        """Rows arrived, or a queue stopped accepting: close an open batch window early if full."""
        self._arrived.set()

    async def detach(self, member: MemberQueue) -> None:
        """Stop serving `member`: its running batches are cancelled; the last detach stops the loop."""
        if member in self._members:
            self._members.remove(member)
        for task in list(member.running):
            task.cancel()
        await asyncio.gather(*member.running, return_exceptions=True)
        if not self._members and self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            if self._own_pool:
                self._lanes[0].shutdown(wait=False, cancel_futures=True)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("the dispatch loop of %s crashed", self.name, exc_info=exc)
        why = f"the {self.name} dispatch loop crashed ({type(exc).__name__}); restart the service"
        self.error = InferenceFailed(why)
        for member in self._members:
            member.fail_all(self.error)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not any(m.jobs for m in self._members):
                self._arrived.clear()
                await self._arrived.wait()
            await self._free.acquire()
            member = fair_cut.next_queue(self._members)
            # The window starts at the oldest waiting row, not at this slot's release.
            while member is not None and member.accepting and member.queued_rows < member.max_batch_size:
                remaining = member.oldest + member.max_delay_s - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                member = fair_cut.next_queue(self._members)
            batch = member.take(loop.time()) if member is not None else []
            if not batch:
                self._free.release()
                continue
            held = 1
            # Wide only when nothing else is queued or still decoding: those rows would wait for it.
            if member.can_run_wide and self._in_flight == 0 and not any(
                m.queued_rows or m.reserved_rows for m in self._members
            ):
                while held < self.slots and not self._free.locked():  # every slot is free: no waiting
                    await self._free.acquire()
                    held += 1
            lane = self._idle_lanes.pop()
            task = loop.create_task(self._run(member, batch, held, lane))
            member.running.add(task)
            task.add_done_callback(member.running.discard)

    async def _run(self, member: MemberQueue, batch: list[Slice], held: int, lane: int) -> None:
        self._in_flight += 1
        try:
            await self._run_batch(member, batch, self._lanes[lane], wide=held > 1)
        finally:
            self._in_flight -= 1
            self._idle_lanes.append(lane)
            for _ in range(held):
                self._free.release()

    async def _run_batch(self, member: MemberQueue, batch: list[Slice], lane: Executor, *, wide: bool) -> None:
        """Run one batch on `lane` and hand its outputs to the queue; only its own requests fail if it raises."""
        loop = asyncio.get_running_loop()
        parts = [s.rows for s in batch]
        rows = sum(len(p) for p in parts)
        started = time.perf_counter()
        try:
            out, stages = await loop.run_in_executor(lane, _call, member, parts, wide)
            if len(out) != rows:
                raise RuntimeError(f"run_batch returned {len(out)} outputs for {rows} rows")
        except asyncio.CancelledError:  # stopped: no caller may hang
            member.fail(batch, NotReady(f"model {member.name} stopped before the request ran"))
            raise
        except Exception as exc:
            log.exception("batch of %d rows failed on model %s", rows, member.name)
            metrics.BATCHES.labels(member.name, "error").inc()
            member.fail(batch, InferenceFailed(f"inference failed on model {member.name}: {type(exc).__name__}"))
            return
        elapsed = time.perf_counter() - started
        if member.cost is not None and not wide:  # the estimate is of one slot's cost
            member.cost.observe(member.name, rows, elapsed)
        metrics.INFERENCE_DURATION.labels(member.name).observe(elapsed)
        metrics.BATCHES.labels(member.name, "ok").inc()
        metrics.BATCH_ROWS.labels(member.name).observe(rows)
        metrics.BATCH_FILL.labels(member.name).observe(rows / member.max_batch_size)
        metrics.EVALUATED_ROWS.labels(member.name).inc(rows)
        member.deliver(batch, out, stages)


def _call(member: MemberQueue, parts: list[np.ndarray], wide: bool) -> tuple[np.ndarray, tuple[float, float, float]]:
    """In the slot's thread: joining a large batch's rows would stall the event loop."""
    started = time.perf_counter()
    rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
    joined = time.perf_counter() - started  # counted as copying in
    run = member.run_wide if wide and member.run_wide is not None else member.run_batch
    done = run(rows)
    if isinstance(done, np.ndarray):
        return done, (joined, 0.0, 0.0)
    return done.outputs, (joined + done.copy_in_s, done.compute_s, done.copy_out_s)
