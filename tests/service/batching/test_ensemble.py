"""The ensemble (service/batching/ensemble.py): admission by time, then across members all or none,
and never a leak of room."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.admission import CostModel
from service.batching import Device, Ensemble, MemberQueue
from service.errors import NotReady, Overloaded, TooCostly
from tests.service.conftest import Model, rows, run


def ensemble(max_queue_rows: int = 10) -> Ensemble:
    queues = [
        MemberQueue(lambda r, k=k: r * k, device=Device(1), name=f"m{k}", max_batch_size=4, max_delay_s=0.0,
                    max_queue_rows=max_queue_rows)
        for k in (1, 2, 3)
    ]
    s = Ensemble(queues)
    s.start()
    return s


def held(s: Ensemble) -> list[int]:
    return [b.reserved_rows for b in s.queues.values()]


def test_rows_go_to_every_admitted_member_in_order() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = ensemble()
        with s.admit(2, ["m1", "m2", "m3"]) as admission:
            assert held(s) == [2, 2, 2]
            results = await admission.run(rows(5, 2), deadline=None)
        assert [r.outputs.ravel().tolist() for r in results] == [[5, 6], [10, 12], [15, 18]]
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)


def test_admission_is_all_or_none() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = ensemble()
        s.queues["m2"].reserve(8)  # m2 has room for 2 more rows, the others for 10
        with pytest.raises(Overloaded, match="m2"):
            s.admit(3, ["m1", "m2"])
        assert held(s) == [0, 8, 0]  # m1 took nothing
        await s.stop()

    run(body)


def test_a_member_that_stopped_admitting_gives_back_the_others_room() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = ensemble()
        await s.queues["m3"].drain()
        with pytest.raises(NotReady):
            s.admit(2, ["m1", "m2", "m3"])
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)


def test_room_is_given_back_when_the_rows_never_come() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = ensemble()
        with pytest.raises(ValueError), s.admit(2, ["m1", "m2"]):
            raise ValueError("the image did not decode")
        assert held(s) == [0, 0, 0]
        with pytest.raises(ValueError, match="2 rows were admitted, 3 came"), s.admit(2, ["m1"]) as admission:
            await admission.run(np.zeros((3, 1)), deadline=None)
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)


def test_the_ensemble_admits_by_time_and_refuses_the_never_feasible() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        model = Model(loop, hold=True)
        cost = CostModel()
        for name in "ab":
            cost.seed(name, 1.0)  # a fake cost: one second per row per slot
        device = Device(2)
        queues = [MemberQueue(model, device=device, name=n, max_batch_size=2, max_delay_s=0.0, max_queue_rows=4096)
                  for n in "ab"]
        s = Ensemble(queues, cost=cost, max_wait_s=5.0)
        s.start()
        now = loop.time()
        with pytest.raises(TooCostly, match="about 2.0 s"):
            s.admit(4, ["a"], deadline=now + 1.0)  # 4 rows on 2 slots: 2 s even when idle
        held = s.admit(8, ["a", "b"], deadline=None)  # 8 s of work, nothing ahead: admitted
        assert s.estimate(1, ["a"]).wait_s == pytest.approx(1.0)  # min(8, 1) rows of each member, 2 slots
        assert s.estimate(8, ["a"]).wait_s == pytest.approx(8.0)
        with pytest.raises(Overloaded) as refused:
            s.admit(8, ["a"], deadline=None)  # it would wait 8 s > 5 s
        assert refused.value.headers["Retry-After"] == "3"
        small = s.admit(1, ["a"], deadline=None)  # the big one never shuts a small one out
        held.release()
        small.release()
        for b in s.queues.values():
            await b.stop()

    run(body)


