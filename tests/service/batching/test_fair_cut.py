"""The fair cut (service/batching/fair_cut.py): which rows go next, across every member. Pure
functions over plain records: no queue, no clock."""

from __future__ import annotations

from service.batching import fair_cut


class _Job:
    def __init__(self, sent: int, seq: int, waiting: int, enqueued: float = 0.0, row_s: float = 1.0) -> None:
        self.sent, self.seq, self.waiting, self.enqueued, self.row_s = sent, seq, waiting, enqueued, row_s


class _Queue:
    def __init__(self, *jobs: _Job) -> None:
        self.jobs = list(jobs)


def test_the_cut_serves_the_least_served_then_the_oldest() -> None:
    big, small = _Job(sent=40, seq=1, waiting=100), _Job(sent=0, seq=3, waiting=1)
    older = _Job(sent=0, seq=2, waiting=3)
    assert [(j.seq, n) for j, n in fair_cut.cut([big, small, older], 5)] == [(2, 3), (3, 1), (1, 1)]


def test_a_stream_of_small_requests_cannot_starve_an_admitted_larger_one() -> None:
    # One slot, batches of 2 rows, each row 1 s: two 1-row requests arrive per batch, for ever (the
    # device's whole capacity). Least-served-first gave every batch to the newcomers.
    big, clock, seq, jobs = _Job(0, 0, 10), 0.0, 1, []
    jobs.append(big)
    while big.waiting and clock < 100:
        jobs += [_Job(0, seq, 1, enqueued=clock), _Job(0, seq + 1, 1, enqueued=clock)]
        seq += 2
        for job, n in fair_cut.cut([j for j in jobs if j.waiting], 2):
            job.sent, job.waiting = job.sent + n, job.waiting - n
            clock += n
    # It shares the device with the newcomers instead of waiting for a gap that never comes.
    assert big.waiting == 0 and clock <= 2 * 10 + 2


def test_the_next_batch_goes_to_the_member_with_the_least_served_request() -> None:
    busy, fresh, empty = _Queue(_Job(8, 1, 100)), _Queue(_Job(0, 5, 1)), _Queue()
    assert fair_cut.next_queue([busy, fresh, empty]) is fresh
    assert fair_cut.next_queue([busy, empty]) is busy
    assert fair_cut.next_queue([empty]) is None


