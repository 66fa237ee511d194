"""The fair cut (service/batching/fair_cut.py): which rows go next, across every member. Pure
functions over plain records: no queue, no clock."""

from __future__ import annotations

from service.batching import fair_cut


class _Job:
    def __init__(self, served_s: float, seq: int, waiting: int, arrived: float = 0.0,
                 share: fair_cut.Share | None = None) -> None:
        self.share = share or fair_cut.Share(arrived, served_s)
        self.seq, self.waiting = seq, waiting

    def serve(self, rows: int, row_s: float = 1.0) -> None:
        self.waiting -= rows
        self.share.served_s += rows * row_s


class _Queue:
    def __init__(self, *jobs: _Job) -> None:
        self.jobs = list(jobs)


def test_the_cut_serves_the_least_served_then_the_oldest() -> None:
    big, small = _Job(served_s=40, seq=1, waiting=100), _Job(served_s=0, seq=3, waiting=1)
    older = _Job(served_s=0, seq=2, waiting=3)
    assert [(j.seq, n) for j, n in fair_cut.cut([big, small, older], 5)] == [(2, 3), (3, 1), (1, 1)]


def _beside_newcomers(big: list[_Job], per_batch: int = 2) -> tuple[float, list[float]]:
    """One slot, batches of 2 rows, each row 1 s; `per_batch` 1-row requests arrive per batch, for
    ever (2: the device's whole capacity). Returns when `big` (a request's rows on its members)
    are done, and how long each newcomer waited."""
    clock, seq, jobs, waits = 0.0, len(big), list(big), []
    while any(j.waiting for j in big) and clock < 1000:
        jobs += [_Job(0, seq + i, 1, arrived=clock) for i in range(per_batch)]
        seq += per_batch
        for job, n in fair_cut.cut([j for j in jobs if j.waiting], 2):
            if job not in big:
                waits.append(clock - job.share.arrived)
            job.serve(n)
            clock += n
    assert clock < 1000, "the large request never finished"
    return clock, waits


def test_a_stream_of_small_requests_cannot_starve_an_admitted_larger_one() -> None:
    # Least-served-first gave every batch to the newcomers.
    clock, _ = _beside_newcomers([_Job(0, 0, 10)])
    # It keeps its share (within whole batches) instead of waiting for a gap that never comes.
    assert clock <= 1.25 * 10 / fair_cut.LARGE_SHARE


def test_a_request_on_seven_members_keeps_one_share_not_seven() -> None:
    # Its rows on 7 members advance one virtual start: counted per member, each of the 7 ran 7x
    # behind its share, and newcomers at half the device's capacity waited for the whole request.
    share = fair_cut.Share(0.0)
    clock, waits = _beside_newcomers([_Job(0, i, 10, share=share) for i in range(7)], per_batch=1)
    assert clock <= 2 * 70  # it has the half the newcomers leave
    assert max(waits) <= 4  # newcomers wait for a batch or two, not for the 140 s it takes


def test_the_next_batch_goes_to_the_member_with_the_least_served_request() -> None:
    busy, fresh, empty = _Queue(_Job(8.0, 1, 100)), _Queue(_Job(0, 5, 1)), _Queue()
    assert fair_cut.next_queue([busy, fresh, empty]) is fresh
    assert fair_cut.next_queue([busy, empty]) is busy
    assert fair_cut.next_queue([empty]) is None


