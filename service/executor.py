"""The device executor: one compute budget per device, shared by every member's queue (issue 13).

It owns the run slots (CPU: one per core) and the one dispatch loop that fills them: when a slot
is free it asks the fair cut which member holds the least-served request, waits out that queue's
batch window, takes the batch and runs it off the event loop. A batch alone on the device, with
nothing else waiting or decoding, takes every slot and runs on the member's wide session (intra-op threads =
cores; design.md 5: ~28 ms instead of ~50 ms for one image on 2 cores). If the loop itself
crashes, every queued request and every later one fails at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Protocol

from service import fair_cut
from service.errors import InferenceFailed

log = logging.getLogger(__name__)


class Member(Protocol):
    """What a member's queue (service/batching.py) shows the executor."""

    name: str
    max_batch_size: int
    max_delay_s: float
    accepting: bool
    can_run_wide: bool
    running: set[asyncio.Task[None]]

    @property
    def jobs(self) -> Sequence[fair_cut.Waiting]: ...
    @property
    def queued_rows(self) -> int: ...
    @property
    def reserved_rows(self) -> int: ...
    @property
    def oldest(self) -> float: ...
    def take(self, now: float) -> list: ...
    async def run(self, batch: list, pool: Executor, *, wide: bool) -> None: ...
    def fail_all(self, exc: Exception) -> None: ...


class DeviceExecutor:
    """`lanes`: one single-thread executor per slot, a batch in slot i runs on lane i (CUDA: each
    lane's thread owns its sessions, service/cuda.py); without them the slots share a thread pool."""

    def __init__(self, slots: int, *, name: str = "device", lanes: Sequence[Executor] | None = None) -> None:
        if slots < 1:
            raise ValueError("a device needs at least one run slot")
        if lanes is not None and len(lanes) != slots:
            raise ValueError(f"{slots} slots need {slots} lanes, got {len(lanes)}")
        self.slots, self.name = slots, name
        self.error: Exception | None = None  # set when the dispatch loop crashed
        self._members: list[Member] = []
        self._free = asyncio.Semaphore(slots)
        self._own_pool = lanes is None
        self._lanes: list[Executor] = (
            list(lanes) if lanes is not None else [ThreadPoolExecutor(slots, thread_name_prefix=f"run-{name}")] * slots
        )
        self._idle_lanes = list(range(slots))  # which lane each acquired slot runs on
        self._arrived = asyncio.Event()
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def serves(self, member: Member) -> bool:
        return self._task is not None and not self._task.done() and member in self._members

    def attach(self, member: Member) -> None:
        """Serve `member` from now on; the first attach starts the dispatch loop."""
        if member not in self._members:
            self._members.append(member)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"executor-{self.name}")
            self._task.add_done_callback(self._ended)

    def notify(self) -> None:
        """Rows arrived, or a queue stopped accepting: close an open batch window early if full."""
        self._arrived.set()

    async def detach(self, member: Member) -> None:
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

    async def _run(self, member: Member, batch: list, held: int, lane: int) -> None:
        self._in_flight += 1
        try:
            await member.run(batch, self._lanes[lane], wide=held > 1)
        finally:
            self._in_flight -= 1
            self._idle_lanes.append(lane)
            for _ in range(held):
                self._free.release()
