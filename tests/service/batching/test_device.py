"""The device (service/batching/device.py): one budget of run slots for every member, the earliest
virtual start first across members, a lone batch runs wide, a crash fails everything at once.
Real threads and events, no sleeps, no timing (a fake clock where a cost must be slow)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.admission import CostModel
from service.batching import Device, Ensemble, MemberQueue
from service.batching import device as devices
from service.errors import InferenceFailed
from tests.service.conftest import Model, rows, run


def members(model: Model, device: Device, names: str = "abc", **kw: object) -> list[MemberQueue]:
    queues = [
        MemberQueue(model, device=device, name=n, max_batch_size=2, max_delay_s=0.0, max_queue_rows=4096, **kw)
        for n in names
    ]
    for q in queues:
        q.start()
    return queues


def test_every_member_shares_the_devices_slots() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        a, b, c = members(model, Device(2))
        futures = [m.submit(rows(100 * i, 2)) for i, m in enumerate((a, b, c))]
        assert {await model.started.get(), await model.started.get()} == {2}
        assert model.started.empty() and len(model.batches) == 2  # two slots, three members: one waits
        model.open()
        await asyncio.gather(*futures)
        assert len(model.batches) == 3
        for m in (a, b, c):
            await m.stop()

    run(body)


def test_a_small_request_on_one_member_overtakes_a_big_one_on_another() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        a, b = members(model, Device(1), "ab")
        big = a.submit(rows(0, 1008))
        await model.started.get()  # the big request's first chunk runs on member a
        small = b.submit(rows(5000, 1))
        model.open()
        done, _ = await asyncio.wait({big, small}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {small} and 5000 in model.batches[1].ravel()  # the very next batch, on member b
        await big
        await a.stop()
        await b.stop()

    run(body)


def test_a_batch_alone_on_the_device_takes_every_slot_and_runs_wide() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model, wide_calls = Model(loop), []

        def wide(r: np.ndarray) -> np.ndarray:
            wide_calls.append(len(r))
            return r * 10

        (a,) = members(model, Device(2), "a", run_wide=wide)
        assert (await a.submit(rows(3, 1))).outputs.tolist() == [[30]]
        assert wide_calls == [1] and not model.batches
        await a.stop()

    run(body)


def test_a_crashed_dispatch_loop_fails_pending_and_later_requests_at_once() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop)
        executor = Device(1)
        a, b = members(model, executor, "ab")
        crashed = threading.Event()

        def broken(now: float) -> list:
            crashed.set()
            raise RuntimeError("a bug in the cut")

        a.take = broken  # type: ignore[method-assign]
        pending_a, pending_b = a.submit(rows(0, 1)), b.submit(rows(10, 1))
        for pending in (pending_a, pending_b):
            with pytest.raises(InferenceFailed, match="dispatch loop crashed"):
                await pending
        assert crashed.is_set() and not model.batches
        with pytest.raises(InferenceFailed, match="dispatch loop crashed"):
            b.submit(rows(20, 1))
        with pytest.raises(InferenceFailed):
            b.reserve(1)
        await a.stop()
        await b.stop()

    run(body)


def test_a_slow_first_run_on_each_thread_does_not_make_admission_shed_a_burst(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GPU's first run of a session on a thread takes 0.7-3 s (handles, kernels); the cost model
    must not carry it into the estimates of the burst that follows (a moving average shed 117 of 128).
    The batcher's clock is a fake one that a cold run moves 0.3 s forward."""
    clock = [0.0]
    monkeypatch.setattr(devices.time, "perf_counter", lambda: clock[0])

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cold: set[int] = set()

        def model(batch: np.ndarray) -> np.ndarray:
            clock[0] += 0.0004 + 0.0001 * len(batch)  # what warm-up measured
            if threading.get_ident() not in cold:  # the first run on this slot's thread
                cold.add(threading.get_ident())
                clock[0] += 0.3  # 600 times the measured cost of a batch of one
            return np.zeros((len(batch), 1000), np.float32)

        cost = CostModel()
        cost.seed("a", 0.0001, fixed_s=0.0004)  # as measured at warm-up, on another thread
        batcher = MemberQueue(model, device=Device(2), name="a", max_batch_size=64, max_delay_s=0.0,
                              max_queue_rows=4096, cost=cost)
        batcher.start()
        s = Ensemble([batcher], cost=cost, max_wait_s=0.5)
        while len(cold) < 2:  # requests two at a time until both slot threads ran cold once
            first = [s.admit(1, ["a"]) for _ in range(2)]
            await asyncio.gather(*(r.run(rows(0, 1), deadline=None) for r in first))
        # Not 600 times the measurement (two slots share the fake clock: up to twice it).
        assert cost.per_row("a") <= 2 * 0.0001 and cost.fixed("a") <= 2 * 0.0004
        # 800 rows at once: under 0.2 s of work on 2 slots, under the 0.5 s bound; with the cold
        # runs averaged in (a moving average) it would be 12 s, and most of the burst would get 503.
        burst = [s.admit(8, ["a"]) for _ in range(100)]
        await asyncio.gather(*(r.run(rows(0, 8), deadline=None) for r in burst))
        await batcher.stop()

    run(body)
