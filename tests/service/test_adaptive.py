"""Walks up the Table 3 ladder (service/adaptive.py): which rungs, what each adds, when an image
stops, and the answer at the deadline. Tiny ONNX members behind real batchers; no clock asserts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest

from service import adaptive, ladder, metrics
from service.admission import CostModel
from service.batching import Device, Ensemble, MemberQueue
from service.classifier import Classifier
from service.errors import DeadlineExceeded, InvalidImage, Overloaded
from service.stopping import StoppingRule
from tests.conftest import make_image
from tests.service.conftest import run
from tests.tiny_models import tiny_model

LABELS = [(f"n{i:08d}", f"class {i}") for i in range(1000)]
NEVER, ALWAYS = StoppingRule(default=2.0), StoppingRule(default=0.0)  # margins are within [0, 1]


def test_each_step_runs_only_what_the_rungs_below_did_not() -> None:
    walk = ladder.climb(crops=None, models=None, members=3)
    names = ["a", "b", "c"]
    assert adaptive.steps(walk, names) == [
        [adaptive.Group(("a",), 0, 1)],
        [adaptive.Group(("b", "c"), 0, 1)],
        [adaptive.Group(("a", "b", "c"), 1, 10)],
        [adaptive.Group(("a", "b", "c"), 10, 144)],
    ]
    evaluations = sum(len(g.members) * (g.stop - g.start) for step in adaptive.steps(walk, names) for g in step)
    assert evaluations == 144 * 3  # the paper's count of the top rung: nothing ran twice
    assert adaptive.steps(ladder.climb(crops=None, models=1, members=3), names) == [
        [adaptive.Group(("a",), 0, 1)], [adaptive.Group(("a",), 1, 10)], [adaptive.Group(("a",), 10, 144)],
    ]


class Members:
    """Tiny ONNX members (tests/tiny_models.py) that count their rows, and can be held at a gate."""

    def __init__(self, count: int) -> None:
        self.sessions = [ort.InferenceSession(tiny_model(i).SerializeToString()) for i in range(count)]
        self.rows = [0] * count
        self.gates = [threading.Event() for _ in range(count)]  # member i runs while gates[i] is set
        for gate in self.gates:
            gate.set()
        self.held = threading.Event()  # a batch is waiting at a closed gate

    def runner(self, i: int) -> Callable[[np.ndarray], np.ndarray]:
        def run_batch(rows: np.ndarray) -> np.ndarray:
            if not self.gates[i].is_set():
                self.held.set()
                self.gates[i].wait(10)
            self.rows[i] += len(rows)
            return self.sessions[i].run(None, {"image": rows})[0]

        return run_batch


def classifier(members: Members, *, cost: CostModel | None = None, max_queue_rows: int = 4096) -> Classifier:
    batchers = [
        MemberQueue(members.runner(i), device=Device(1), name=f"m{i}", max_batch_size=16, max_delay_s=0.0,
                    max_queue_rows=max_queue_rows)
        for i in range(len(members.sessions))
    ]
    scheduler = Ensemble(batchers, cost=cost)
    scheduler.start()
    return Classifier(scheduler, LABELS, max_pixels=10**7, max_aspect=32, threads=2)


def walk(c: Classifier, images: list[bytes], rule: StoppingRule, **kwargs: object) -> adaptive.Walk:
    options = {"crops": None, "models": None, "adaptive": True, "partial": False, "deadline": None, **kwargs}
    return c.walk(images, rule=rule, **options)


async def close(c: Classifier) -> None:
    await c.ensemble.stop()
    c.close()


def test_a_walk_to_the_top_answers_as_the_fixed_modes_with_every_row_run_once() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(3)
        c = classifier(members)
        images = [make_image(300, 240, seed=1), make_image(250, 330, seed=2)]
        top = await walk(c, images, NEVER).run()
        assert members.rows == [144 * 2] * 3  # crops x members x images: nothing twice
        assert [(i.evaluations, i.rung, i.stop) for i in top.images] == [(432, "144x3", "last_rung")] * 2
        assert top.crops == 144 and top.members == ["m0", "m1", "m2"] and not top.partial
        fixed = await c.probabilities(images, 144, ["m0", "m1", "m2"], deadline=None)
        np.testing.assert_allclose(top.values, fixed.values, rtol=1e-9, atol=1e-12)
        ten = await walk(c, images, NEVER, crops=10, models=3, adaptive=False, partial=True).run()
        fixed = await c.probabilities(images, 10, ["m0", "m1", "m2"], deadline=None)
        np.testing.assert_allclose(ten.values, fixed.values, rtol=1e-9, atol=1e-12)  # 1x1, 1x3, then 10x3
        await close(c)

    run(body)


def test_a_confident_image_stops_at_the_first_rung() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(3)
        c = classifier(members)
        before = metrics.WALK_STOPS.labels("adaptive", "confident")._value.get()
        answer = await walk(c, [make_image()], ALWAYS).run()
        assert members.rows == [1, 0, 0]
        (image,) = answer.images
        assert (image.evaluations, image.rung, image.stop) == (1, "1x1", "confident")
        assert answer.evaluations == 1 and answer.members == ["m0"] and not answer.partial
        assert metrics.WALK_STOPS.labels("adaptive", "confident")._value.get() == before + 1
        await close(c)

    run(body)


def test_each_image_stops_on_its_own() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(2)
        c = classifier(members)
        images = [make_image(seed=1), make_image(seed=2)]
        first = await walk(c, images[:1], NEVER, crops=1, models=1).run()  # 1x1 alone: its margin
        margin = float(np.diff(np.sort(first.values[0])[-2:])[0])
        # A threshold the first image's 1x1 average reaches and the second's (not the same) does not.
        alone = await walk(c, images[1:], NEVER, crops=1, models=1).run()
        other = float(np.diff(np.sort(alone.values[0])[-2:])[0])
        assert margin != other
        rule = StoppingRule({"1x1": (margin + other) / 2}, default=2.0)
        answer = await walk(c, images if margin > other else images[::-1], rule).run()
        assert [i.stop for i in answer.images] == ["confident", "last_rung"]
        assert [i.evaluations for i in answer.images] == [1, 288]
        assert answer.evaluations == 288
        await close(c)

    run(body)


def test_a_rung_that_would_not_fit_the_deadline_ends_the_walk() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(1)
        # One estimated second per row: 1 and 9 rows fit a 30 s budget, 134 more do not.
        c = classifier(members, cost=CostModel(default_s=1.0))
        answer = await walk(c, [make_image()], NEVER, deadline=loop.time() + 30).run()
        (image,) = answer.images
        assert (image.evaluations, image.rung, image.stop) == (10, "10x1", "no_time")
        assert not answer.partial and members.rows == [10]  # an adaptive walk that stopped in time
        await close(c)

    run(body)


def test_the_first_rung_is_what_admission_weighs() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        c = classifier(Members(1), max_queue_rows=4)
        c.ensemble.queues["m0"].reserve(4)  # the queue is full: even one row is refused
        with pytest.raises(Overloaded):
            await walk(c, [make_image()], NEVER).run()
        c.ensemble.queues["m0"].release(4)
        await close(c)

    run(body)


def _held_at_second_rung(partial: bool) -> Callable[[asyncio.AbstractEventLoop], object]:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(2)
        members.gates[1].clear()  # the first rung (1x1) runs, the second (1x2) is held in its batch
        c = classifier(members)
        w = walk(c, [make_image()], NEVER, partial=partial)
        task = asyncio.ensure_future(w.run())
        await asyncio.to_thread(members.held.wait, 10)
        assert members.rows == [1, 0]
        task.cancel()  # what the handler does at the deadline
        await asyncio.gather(task, return_exceptions=True)
        members.gates[1].set()
        if not partial:
            with pytest.raises(DeadlineExceeded):
                w.at_deadline()
        else:
            answer = w.at_deadline()
            (image,) = answer.images
            assert answer.partial and (image.evaluations, image.rung, image.stop) == (1, "1x1", "deadline")
        await close(c)

    return body


def test_with_partial_the_deadline_answers_what_finished() -> None:
    run(_held_at_second_rung(partial=True))


def test_without_partial_the_deadline_is_a_504() -> None:
    run(_held_at_second_rung(partial=False))


def test_with_nothing_finished_the_deadline_is_a_504_even_with_partial() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(1)
        members.gates[0].clear()
        c = classifier(members)
        w = walk(c, [make_image()], NEVER, partial=True)
        task = asyncio.ensure_future(w.run())
        await asyncio.to_thread(members.held.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        members.gates[0].set()
        with pytest.raises(DeadlineExceeded):
            w.at_deadline()
        assert c.ensemble.queues["m0"].reserved_rows == 0
        await close(c)

    run(body)


def test_client_crops_walk_the_members() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        members = Members(3)
        c = classifier(members)
        crops = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
        answer = await walk(c, crops, NEVER, crops=1).run()
        assert members.rows == [2, 2, 2] and [i.rung for i in answer.images] == ["1x3", "1x3"]
        fixed = await c.probabilities(crops, 1, ["m0", "m1", "m2"], deadline=None)
        np.testing.assert_allclose(answer.values, fixed.values, rtol=1e-9, atol=1e-12)
        await close(c)

    run(body)


def test_an_image_that_does_not_decode_gives_the_room_back() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        c = classifier(Members(2))
        with pytest.raises(InvalidImage, match="decodable"):
            await walk(c, [make_image(), b"not an image"], NEVER).run()
        assert all(b.reserved_rows == 0 and b.queued_rows == 0 for b in c.ensemble.queues.values())
        await close(c)

    run(body)
