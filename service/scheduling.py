"""Scheduler: one batcher per ensemble member; a request's rows go to each member it asks for.

Admission is atomic across members: either every member's queue takes the rows, or none does.
It happens before the images are decoded (`admit`), so past capacity a request is refused
before it costs preprocessing, and no admitted request waits outside the queue's bound.
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

    def admit(self, rows: int, members: list[str]) -> Admission:
        """Reserve room for `rows` in every member's queue, or raise `Overloaded` and reserve none."""
        batchers = [self.batchers[m] for m in members]
        full = [b.name for b in batchers if not b.fits(rows)]
        if full:
            raise Overloaded(f"queue full for {', '.join(full)}; retry later")
        admission = Admission(rows)
        try:
            for b in batchers:
                b.reserve(rows)
                admission.batchers.append(b)
        except BaseException:  # NotReady from one member (draining): give back the others' room
            admission.release()
            raise
        return admission

    def start(self) -> None:
        for b in self.batchers.values():
            b.start()

    async def drain(self) -> None:
        await asyncio.gather(*(b.drain() for b in self.batchers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))


class Admission:
    """Room held in some members' queues for one request's rows; a context manager that gives
    back whatever was not used, on every path."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.batchers: list[Batcher] = []

    async def run(self, rows: np.ndarray, *, deadline: float | None) -> list[Result]:
        """Queue the prepared rows in the held room; one `Result` per member."""
        if len(rows) != self.rows:
            raise ValueError(f"{self.rows} rows were admitted, {len(rows)} came")
        futures = []
        try:
            while self.batchers:  # a member that fails to take its rows keeps its room for release()
                futures.append(self.batchers[0].submit(rows, deadline=deadline, reserved=True))
                self.batchers.pop(0)
            return list(await asyncio.gather(*futures))
        finally:
            for f in futures:  # one member failed or the client left: free the others' rows
                f.cancel()

    def release(self) -> None:
        for b in self.batchers:
            b.release(self.rows)
        self.batchers = []

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
