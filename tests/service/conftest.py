"""Helpers of the batching, scheduling and executor tests: a model whose batches a test holds and
releases with events, rows that say where they came from, and a bounded event-loop runner."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import numpy as np


class Model:
    """A run_batch that records every batch, can hold it until released, and fails on negative rows."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, hold: bool = False) -> None:
        self.loop = loop
        self.batches: list[np.ndarray] = []
        self.permits = threading.Semaphore(0 if hold else 10**6)  # one permit lets one batch finish
        self.started: asyncio.Queue[int] = asyncio.Queue()
        self.started_at: list[float] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.batches.append(rows.copy())
        self.started_at.append(self.loop.time())
        self.loop.call_soon_threadsafe(self.started.put_nowait, len(rows))
        if not self.permits.acquire(timeout=10):
            raise TimeoutError("test never released the batch")
        if (rows < 0).any():
            raise ValueError("poisoned row")
        return rows * 10  # outputs depend on inputs, so scatter errors show

    def allow(self, batches: int = 1) -> None:
        self.permits.release(batches)

    def open(self) -> None:
        self.permits.release(10**6)

    @property
    def evaluated(self) -> set[int]:
        return {int(v) for b in self.batches for v in b.ravel()}


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count).reshape(count, 1)


def run(test: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    async def main() -> None:
        await asyncio.wait_for(test(asyncio.get_running_loop()), 30)

    asyncio.run(main())
