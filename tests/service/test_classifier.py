"""The request path minus HTTP (service/classifier.py): queue room is taken before decoding."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import Device, Ensemble, MemberQueue
from service.classifier import Classifier
from service.errors import InvalidImage, Overloaded
from tests.conftest import make_image
from tests.service.conftest import run

LABELS = [(f"n{i:08d}", f"class {i}") for i in range(1000)]


def uniform(rows: np.ndarray) -> np.ndarray:
    out = np.full((len(rows), 1000), 1e-4, dtype=np.float32)
    out[:, 7] = 0.9
    return out


def classifier(max_queue_rows: int) -> Classifier:
    batcher = MemberQueue(uniform, device=Device(1), name="m", max_batch_size=8, max_delay_s=0.0,
                          max_queue_rows=max_queue_rows)
    scheduler = Ensemble([batcher])
    scheduler.start()
    return Classifier(scheduler, LABELS, max_pixels=10**7, max_aspect=32, threads=1)


def test_requests_waiting_for_a_decode_thread_hold_queue_room() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        c = classifier(max_queue_rows=20)
        batcher = c.ensemble.queues["m"]
        gate = threading.Event()
        c._executor.submit(gate.wait, 10)  # the only decode thread is busy
        image = make_image()
        waiting = [
            asyncio.ensure_future(c.classify([image], crops=10, members=["m"], topk=1, deadline=None))
            for _ in range(2)
        ]
        await asyncio.sleep(0)  # one loop turn: both were admitted and wait for the thread
        assert batcher.reserved_rows == 20 and batcher.queued_rows == 0
        with pytest.raises(Overloaded):  # refused at once, before it costs a decode
            await c.classify([image], crops=1, members=["m"], topk=1, deadline=None)
        gate.set()
        for result in await asyncio.gather(*waiting):
            assert result.predictions[0][0].index == 7 and result.evaluations == 10
        assert batcher.reserved_rows == 0 and batcher.queued_rows == 0
        await c.ensemble.stop()
        c.close()

    run(body)


def test_an_image_that_does_not_decode_gives_its_room_back() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        c = classifier(max_queue_rows=20)
        with pytest.raises(InvalidImage):
            await c.classify([make_image(), b"not an image"], crops=10, members=["m"], topk=1, deadline=None)
        assert c.ensemble.queues["m"].reserved_rows == 0
        result = await c.classify([make_image()] * 2, crops=10, members=["m"], topk=1, deadline=None)
        assert len(result.predictions) == 2  # the full 20 rows fit again
        await c.ensemble.stop()
        c.close()

    run(body)
