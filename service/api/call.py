"""One request's life, the same over /v1, KServe v2 over HTTP and gRPC (docs/architecture.md).

A `Call` is made when the request reaches the service (service/api/middleware.py for HTTP, the
RPC wrapper for gRPC), before anything is parsed, so every protocol's deadline runs on one clock
from arrival. It holds the request's deadline, its admission when that came before the body was
read (a raw /v1 image: admitted once, then used), and the `mode` label its metrics and access
line carry. `run` ends the work when it finishes, when the client leaves, or when the deadline
passes, and cancels it then, so its queued rows are dropped before they cost an evaluation.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from service.batching import Reservation
from service.errors import ClientGone, DeadlineExceeded

T = TypeVar("T")


@dataclass(eq=False)
class Call:
    arrived: float  # loop time the request reached the service
    mode: str = "none"  # the bounded `mode` label, set once the request is checked
    budget_s: float = math.inf
    deadline: float | None = None  # loop time
    client_limit_s: float | None = None  # what the client's own gRPC deadline left at arrival
    reservation: Reservation | None = None  # admitted before the body was read

    @classmethod
    def now(cls) -> Call:
        return cls(asyncio.get_running_loop().time())

    def limit(self, asked_s: float | None, bound_s: float) -> float:
        """The deadline: the smaller of what the request asked and the server's bound, from arrival."""
        self.budget_s = min(asked_s or bound_s, bound_s, self.client_limit_s or math.inf)
        self.deadline = self.arrived + self.budget_s
        return self.deadline

    def still_in_time(self) -> None:
        """504 once the deadline has passed (a slow upload or parse spent it), before admission sees it."""
        if self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline:
            raise DeadlineExceeded(f"the request's deadline of {self.budget_s * 1000:g} ms passed before it was queued")

    async def run(self, work: Awaitable[T], *, gone: Awaitable[object] | None = None, until: float | None = None) -> T:
        """Await `work`, but cancel it when `gone` finishes (the client left), when `until` (the
        deadline by default) passes, or when the caller itself is cancelled."""
        until = self.deadline if until is None else until
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(gone) if gone is not None else None
        timeout_s = None if until is None else max(0.0, until - asyncio.get_running_loop().time())
        try:
            waiting = {task} if watch is None else {task, watch}
            done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # nobody will read the answer: its admission must not outlive us
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if watch is not None and watch in done:
            raise ClientGone("the client disconnected")
        raise DeadlineExceeded(f"the request's deadline of {self.budget_s * 1000:g} ms passed")

    def release(self) -> None:
        """Give back an early admission the request did not use (its body was bad, or it failed)."""
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None
