"""Scheduler: one batcher per ensemble member; a request's rows go to each member it asks for.

Admission is atomic across members: either every member's queue takes the rows, or none does.
"""

from __future__ import annotations

import asyncio

import numpy as np

from service.batching import Batcher, Result
from service.errors import BadRequest, Overloaded


class Scheduler:
    def __init__(self, batchers: list[Batcher]) -> None:
        if not batchers:
            raise ValueError("a scheduler needs at least one model")
        self.batchers = {b.name: b for b in batchers}  # ensemble order; the first is the primary

    @property
    def names(self) -> list[str]:
        return list(self.batchers)

    def members(self, count: int) -> list[str]:
        """The first `count` members, the paper's ensemble order (count 1 = the primary)."""
        if not 1 <= count <= len(self.batchers):
            raise BadRequest(f"models must be between 1 and {len(self.batchers)}, got {count}")
        return self.names[:count]

    async def run(self, rows: np.ndarray, members: list[str], *, deadline: float | None) -> list[Result]:
        """Evaluate `rows` on every member; one `Result` per member, in `members` order."""
        batchers = [self.batchers[m] for m in members]
        full = [b.name for b in batchers if not b.fits(len(rows))]
        if full:
            raise Overloaded(f"queue full for {', '.join(full)}; retry later")
        futures = [b.submit(rows, deadline=deadline) for b in batchers]
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for f in futures:  # one member failed or the client left: free the others' rows
                f.cancel()

    def start(self) -> None:
        for b in self.batchers.values():
            b.start()

    async def drain(self) -> None:
        await asyncio.gather(*(b.drain() for b in self.batchers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))
