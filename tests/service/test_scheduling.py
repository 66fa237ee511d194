"""Admission across ensemble members (service/scheduling.py): all or none, and never a leak of room."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import Batcher
from service.errors import NotReady, Overloaded
from service.scheduling import Scheduler
from tests.service.conftest import rows, run


def scheduler(max_queue_rows: int = 10) -> Scheduler:
    batchers = [
        Batcher(lambda r, k=k: r * k, name=f"m{k}", max_batch_size=4, max_delay_s=0.0, max_queue_rows=max_queue_rows)
        for k in (1, 2, 3)
    ]
    s = Scheduler(batchers)
    s.start()
    return s


def held(s: Scheduler) -> list[int]:
    return [b.reserved_rows for b in s.batchers.values()]


def test_rows_go_to_every_admitted_member_in_order() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = scheduler()
        with s.admit(2, ["m1", "m2", "m3"]) as admission:
            assert held(s) == [2, 2, 2]
            results = await admission.run(rows(5, 2), deadline=None)
        assert [r.outputs.ravel().tolist() for r in results] == [[5, 6], [10, 12], [15, 18]]
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)


def test_admission_is_all_or_none() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = scheduler()
        s.batchers["m2"].reserve(8)  # m2 has room for 2 more rows, the others for 10
        with pytest.raises(Overloaded, match="m2"):
            s.admit(3, ["m1", "m2"])
        assert held(s) == [0, 8, 0]  # m1 took nothing
        await s.stop()

    run(body)


def test_a_member_that_stopped_admitting_gives_back_the_others_room() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = scheduler()
        await s.batchers["m3"].drain()
        with pytest.raises(NotReady):
            s.admit(2, ["m1", "m2", "m3"])
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)


def test_room_is_given_back_when_the_rows_never_come() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        s = scheduler()
        with pytest.raises(ValueError), s.admit(2, ["m1", "m2"]):
            raise ValueError("the image did not decode")
        assert held(s) == [0, 0, 0]
        with pytest.raises(ValueError, match="2 rows were admitted, 3 came"), s.admit(2, ["m1"]) as admission:
            await admission.run(np.zeros((3, 1)), deadline=None)
        assert held(s) == [0, 0, 0]
        await s.stop()

    run(body)
