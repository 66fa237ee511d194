"""The fair cut: which rows go into the next batch, across every member, by virtual start time.

A request's virtual start is its arrival plus the device time its rows already had, on every
member together, over `LARGE_SHARE`. A request larger than a batch is split into chunks
interleaved with the others, so a 1-row request never waits behind a 1008-row one
(docs/architecture.md 5): while the large one runs ahead of its share its virtual start is later
than a newcomer's arrival. Once it falls behind, it goes first, so a stream of small requests
cannot starve it either (least-served-first did: a 10-crop request got 504 beside 16 clients
sending 1-crop requests): on a saturated device it keeps `LARGE_SHARE` of it. The device time is
the request's, not each member's: counted per member, a 7-member request ran 7 times behind its
share and held every 1-crop request behind it until it finished. Across members the same rule
picks the queue. Pure functions over anything with `share`, `seq` and `waiting`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

# The least share of a saturated device a request keeps however many small ones arrive after it;
# the rest goes to newcomers, so a 1-crop stream at 70% of capacity barely sees a 144x7 request.
LARGE_SHARE = 0.25


@dataclass(eq=False)
class Share:
    """One request's place in the cut, shared by its rows on every member it runs on."""

    arrived: float  # loop time
    served_s: float = 0.0  # device seconds its rows were given so far, all members, over the slots

    @property
    def virtual_start(self) -> float:
        return self.arrived + self.served_s / LARGE_SHARE


class Waiting(Protocol):
    share: Share
    seq: int  # arrival order: ties go to the older request

    @property
    def waiting(self) -> int: ...


J = TypeVar("J", bound=Waiting)


def priority(job: Waiting) -> tuple[float, int]:
    """Earliest virtual start first (arrival plus service received), then oldest first."""
    return job.share.virtual_start, job.seq


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
