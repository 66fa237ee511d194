"""service/api/call.py: one request's life: its deadline from arrival, its work cancelled when the
client leaves or the deadline passes, an unused early admission given back. Events, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from service.api.call import Call
from service.errors import ClientGone, DeadlineExceeded


def run(test) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_the_deadline_is_the_smaller_of_the_ask_and_the_bounds_from_arrival() -> None:
    call = Call(100.0)
    assert call.limit(2.0, 60.0) == 102.0 and call.budget_s == 2.0
    assert Call(100.0).limit(None, 60.0) == 160.0
    assert Call(100.0, client_limit_s=0.5).limit(2.0, 60.0) == 100.5  # a gRPC client's own deadline


def test_work_that_finishes_is_its_answer() -> None:
    async def body() -> None:
        call = Call.now()
        call.limit(5.0, 60.0)
        assert await call.run(asyncio.sleep(0, result="answer")) == "answer"

    run(body)


def test_a_client_that_leaves_cancels_the_work() -> None:
    async def body() -> None:
        call, left, started = Call.now(), asyncio.Event(), asyncio.Event()
        call.limit(5.0, 60.0)
        never = asyncio.Event()

        async def work() -> None:
            started.set()
            await never.wait()

        task = asyncio.ensure_future(call.run(work(), gone=left.wait()))
        await started.wait()
        left.set()
        with pytest.raises(ClientGone):
            await task

    run(body)


def test_a_passed_deadline_is_a_504_and_cancels_the_work() -> None:
    async def body() -> None:
        call, cancelled = Call(asyncio.get_running_loop().time() - 10), asyncio.Event()
        call.limit(1.0, 60.0)  # already spent
        with pytest.raises(DeadlineExceeded):
            call.still_in_time()

        async def work() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(DeadlineExceeded, match="1000 ms"):
            await call.run(work())
        assert cancelled.is_set()

    run(body)


def test_an_unused_early_admission_is_given_back() -> None:
    class Held:
        released = 0

        def release(self) -> None:
            self.released += 1

    held = Held()
    call = Call(0.0, reservation=held)  # type: ignore[arg-type]
    call.release()
    call.release()
    assert held.released == 1 and call.reservation is None
