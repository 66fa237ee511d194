"""The fair cut: which rows go into the next batch, least-served request first, across every member.

A request larger than a batch is split into chunks interleaved with the others, so a 1-row request
never waits behind a 1008-row one (design.md 2). Across members the same rule picks the queue: the
next batch goes to the member holding the least-served waiting request. Pure functions over
anything with `sent`, `seq` and `waiting`; the batcher and the device executor call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class Waiting(Protocol):
    sent: int  # rows of the request already handed to batches
    seq: int  # arrival order: ties go to the older request

    @property
    def waiting(self) -> int: ...


J = TypeVar("J", bound=Waiting)


def priority(job: Waiting) -> tuple[int, int]:
    """Least served first, then oldest first."""
    return job.sent, job.seq


def cut(jobs: Iterable[J], space: int) -> list[tuple[J, int]]:
    """Up to `space` rows: (job, how many of its waiting rows), least-served first."""
    taken = []
    for job in sorted(jobs, key=priority):
        if space == 0:
            break
        n = min(job.waiting, space)
        if n:
            taken.append((job, n))
            space -= n
    return taken


class Queue(Protocol):
    @property
    def jobs(self) -> Sequence[Waiting]: ...


Q = TypeVar("Q", bound=Queue)


def next_queue(queues: Iterable[Q]) -> Q | None:
    """The queue (one per member) whose least-served waiting request is the least served of all."""
    best, key = None, None
    for q in queues:
        if q.jobs:
            k = min(priority(j) for j in q.jobs)
            if key is None or k < key:
                best, key = q, k
    return best
