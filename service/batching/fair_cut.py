"""The fair cut: which rows go into the next batch, across every member, by virtual start time.

A request's virtual start is its arrival plus the device time its rows already had (`sent` x
`row_s`): a request larger than a batch is split into chunks interleaved with the others, so a
1-row request never waits behind a 1008-row one (docs/architecture.md 5), and a newcomer overtakes an older
request only while that one has had more than its share, so a stream of small requests cannot
starve an admitted larger one (least-served-first on `sent` alone did: a 10-crop request got 504
beside 16 clients sending 1-crop requests). Across members the same rule picks the queue. Pure
functions over anything with `enqueued`, `sent`, `row_s`, `seq` and `waiting`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class Waiting(Protocol):
    enqueued: float  # arrival, loop time
    sent: int  # rows of the request already handed to batches
    row_s: float  # device seconds one of its rows costs (spread over the slots)
    seq: int  # arrival order: ties go to the older request

    @property
    def waiting(self) -> int: ...


J = TypeVar("J", bound=Waiting)


def priority(job: Waiting) -> tuple[float, int]:
    """Earliest virtual start first (arrival plus service received), then oldest first."""
    return job.enqueued + job.sent * job.row_s, job.seq


def cut(jobs: Iterable[J], space: int) -> list[tuple[J, int]]:
    """Up to `space` rows: (job, how many of its waiting rows), earliest virtual start first."""
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
    """The queue (one per member) holding the waiting request of the earliest virtual start."""
    best, key = None, None
    for q in queues:
        if q.jobs:
            k = min(priority(j) for j in q.jobs)
            if key is None or k < key:
                best, key = q, k
    return best
