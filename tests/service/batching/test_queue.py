"""A member's queue and the contract of service/batching/__init__.py, with real threads and events, no sleeps."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import Device, MemberQueue
from service.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded
from tests.service.conftest import Model, rows, run


def batcher(model: Model, *, concurrency: int = 1, **kw: object) -> MemberQueue:
    """A member's queue on a device of its own with `concurrency` run slots."""
    options = {"name": "m", "max_batch_size": 8, "max_delay_s": 60.0, "max_queue_rows": 4096}
    options.update(kw)
    b = MemberQueue(model, device=Device(concurrency), **options)
    b.start()
    return b


def test_concurrent_requests_share_one_batch() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model)
        futures = [b.submit(rows(i * 100, 1)) for i in range(8)]  # 8 rows fill the batch: no wait
        results = await asyncio.gather(*futures)
        assert len(model.batches) == 1 and len(model.batches[0]) == 8
        for i, r in enumerate(results):
            assert r.outputs.tolist() == [[i * 1000]]
        await b.stop()

    run(body)


def test_batches_never_exceed_max_batch_size_and_keep_row_order() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model, max_delay_s=0.0)
        big, small = b.submit(rows(0, 20)), b.submit(rows(1000, 3))
        r_big, r_small = await asyncio.gather(big, small)
        assert max(len(x) for x in model.batches) <= 8
        assert sum(len(x) for x in model.batches) == 23
        assert r_big.outputs.ravel().tolist() == list(range(0, 200, 10))
        assert r_small.outputs.ravel().tolist() == [10000, 10010, 10020]
        await b.stop()

    run(body)


def test_partial_batch_waits_for_the_window_from_the_first_row() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model, max_delay_s=0.2)
        first_at = loop.time()
        f1 = b.submit(rows(0, 1))
        f2 = b.submit(rows(1, 2))  # arrives inside the window: same batch
        await asyncio.gather(f1, f2)
        assert [len(x) for x in model.batches] == [3]
        assert model.started_at[0] >= first_at + 0.2  # not released before the window closed
        await b.stop()

    run(body)


def test_a_one_row_request_overtakes_a_1008_row_request() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_delay_s=0.0)
        big = b.submit(rows(0, 1008))
        await model.started.get()  # the big request's first chunk is running
        small = b.submit(rows(5000, 1))
        model.open()
        done, _ = await asyncio.wait({big, small}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {small}
        assert 5000 in model.batches[1].ravel()  # the very next batch carried it
        assert (await big).outputs.shape == (1008, 1)
        await b.stop()

    run(body)


def test_a_failing_batch_fails_only_its_requests() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model, max_batch_size=2, max_delay_s=0.0)
        bad, good = b.submit(np.array([[-1], [-2]])), b.submit(rows(7, 2))
        with pytest.raises(InferenceFailed):
            await bad
        assert (await good).outputs.ravel().tolist() == [70, 80]
        assert (await b.submit(rows(9, 1))).outputs.tolist() == [[90]]  # and it keeps serving
        await b.stop()

    run(body)


def test_wrong_output_length_fails_the_batch() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        b = MemberQueue(lambda r: r[:-1], device=Device(1), name="m", max_batch_size=4, max_delay_s=0,
                        max_queue_rows=10)
        b.start()
        with pytest.raises(InferenceFailed):
            await b.submit(rows(0, 2))
        await b.stop()

    run(body)


def test_a_full_queue_rejects_at_once_and_queues_nothing() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=2, max_delay_s=0.0, max_queue_rows=10)
        running = b.submit(rows(0, 2))
        await model.started.get()
        queued = b.submit(rows(100, 10))
        assert b.queued_rows == 10
        with pytest.raises(Overloaded) as err:
            b.submit(rows(200, 1))
        assert err.value.headers["Retry-After"]
        assert b.queued_rows == 10
        model.open()
        await asyncio.gather(running, queued)
        assert 200 not in model.evaluated
        await b.stop()

    run(body)


def test_expired_and_cancelled_requests_are_never_evaluated() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=2, max_delay_s=0.0)
        running = b.submit(rows(0, 2))
        await model.started.get()
        expired = b.submit(rows(100, 2), deadline=loop.time() - 1)
        gone = b.submit(rows(200, 2))
        gone.cancel()  # the client left
        alive = b.submit(rows(300, 2))
        model.open()
        await asyncio.gather(running, alive)
        with pytest.raises(DeadlineExceeded):
            await expired
        assert model.evaluated.isdisjoint({100, 101, 200, 201})
        assert b.queued_rows == 0
        await b.stop()

    run(body)


def test_drain_answers_every_admitted_request_then_refuses() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=4, max_delay_s=60.0)
        futures = [b.submit(rows(i * 10, 3)) for i in range(5)]
        await model.started.get()
        draining = asyncio.ensure_future(b.drain())
        await asyncio.sleep(0)  # one loop turn: drain() has begun (no timing involved)
        with pytest.raises(NotReady):
            b.submit(rows(999, 1))
        model.open()
        await draining
        assert all(f.done() and not f.exception() for f in futures)
        await b.stop()

    run(body)


def test_stop_resolves_every_future() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=2, max_delay_s=0.0)
        running = b.submit(rows(0, 2))
        await model.started.get()
        queued = b.submit(rows(10, 2))
        await b.stop()
        model.open()
        for f in (running, queued):
            with pytest.raises(NotReady):
                await f

    run(body)


@pytest.mark.parametrize("kw", [{"max_batch_size": 0}, {"max_queue_rows": 0}, {"max_delay_s": -1.0}])
def test_invalid_settings_are_refused(kw: dict[str, float]) -> None:
    options = {"name": "m", "max_batch_size": 1, "max_delay_s": 0.0, "max_queue_rows": 1, **kw}
    with pytest.raises(ValueError):
        MemberQueue(lambda r: r, device=Device(1), **options)


def test_a_device_needs_a_run_slot() -> None:
    with pytest.raises(ValueError, match="at least one run slot"):
        Device(0)


def test_small_requests_below_capacity_leave_room_for_a_large_one() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=4, max_delay_s=0.0)
        big, small = b.submit(rows(0, 40)), []
        for i in range(40):  # two fresh 1-row requests arrive during each 4-row batch: half the capacity
            await model.started.get()
            small += [b.submit(rows(1000 + 10 * i + j, 1)) for j in range(2)]
            model.allow(1)
            if big.done():
                break
        assert big.done() and (await big).outputs.shape == (40, 1)
        model.open()
        await asyncio.gather(*small)
        await b.stop()

    run(body)


def test_reserved_room_counts_against_the_bound_until_used_or_released() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model, max_batch_size=2, max_delay_s=0.0, max_queue_rows=10)
        b.reserve(6)  # a request whose images are still decoding
        assert not b.fits(5) and b.fits(4)
        with pytest.raises(Overloaded):
            b.submit(rows(0, 5))
        with pytest.raises(Overloaded):
            b.reserve(5)
        result = b.submit(rows(100, 6), reserved=True)  # the held room becomes the rows
        assert b.reserved_rows == 0
        assert (await result).outputs.ravel().tolist() == list(range(1000, 1060, 10))
        b.reserve(10)
        b.release(10)  # its image was bad: the room is free again
        assert b.reserved_rows == 0 and b.fits(10)
        await b.stop()

    run(body)


def test_drain_waits_for_reserved_rows_and_takes_them() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        b = batcher(model, max_batch_size=4, max_delay_s=60.0)
        b.reserve(3)
        draining = asyncio.ensure_future(b.drain())
        await asyncio.sleep(0)  # one loop turn: drain() has begun (no timing involved)
        with pytest.raises(NotReady):
            b.reserve(1)  # nothing new is admitted ...
        assert not draining.done()  # ... but what was admitted is waited for
        result = b.submit(rows(0, 3), reserved=True)
        await draining
        assert (await result).outputs.ravel().tolist() == [0, 10, 20]
        await b.stop()

    run(body)


def test_drain_ends_when_reserved_rows_are_released() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        b = batcher(Model(loop))
        b.reserve(2)
        draining = asyncio.ensure_future(b.drain())
        await asyncio.sleep(0)
        assert not draining.done()
        b.release(2)
        await draining
        await b.stop()

    run(body)


def test_reserved_rows_after_stop_are_refused_not_lost() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        b = batcher(Model(loop))
        b.reserve(1)
        await b.stop()
        with pytest.raises(NotReady):
            b.submit(rows(0, 1), reserved=True)  # nothing would ever run it: no future left hanging

    run(body)


def test_a_request_larger_than_the_bound_runs_only_from_an_empty_queue() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        b = batcher(model, max_batch_size=4, max_delay_s=0.0, max_queue_rows=10)
        small = b.submit(rows(0, 1))
        with pytest.raises(Overloaded):
            b.submit(rows(100, 12))  # it would never fit beside other work: shed first under load
        model.open()
        await small
        big = b.submit(rows(100, 12))  # idle: it is admitted whole, past the bound
        with pytest.raises(Overloaded):
            b.submit(rows(200, 1))  # and nothing joins it until it has gone to its batches
        assert (await big).outputs.shape == (12, 1)
        await b.stop()

    run(body)
