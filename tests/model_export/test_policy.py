"""model_export/policy.py: the service's adaptive walks replayed on cached probabilities, and the
thresholds calibrate chooses. The replay is checked against the service's own walk (service/adaptive.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_export import policy, probabilities
from model_export.probabilities import Cache
from service.batching import Device, Ensemble, MemberQueue
from service.classifier import Classifier
from service.stopping import StoppingRule
from tests.tiny_models import tiny_model

CLASSES = 4


def one_hot(classes: list[int], confidence: float) -> np.ndarray:
    out = np.full((len(classes), CLASSES), (1 - confidence) / (CLASSES - 1))
    out[np.arange(len(classes)), classes] = confidence
    return out


def cache(rung_answers: dict[str, tuple[list[int], float]], targets: list[int], members: int = 2) -> Cache:
    """Every member says the same at each crop count: (classes per image, confidence)."""
    probs = {k: np.stack([one_hot(c, p)] * members) for k, (c, p) in rung_answers.items()}
    return Cache(probs, np.array(targets), [f"m{i}" for i in range(members)])


def test_the_earliest_confident_rung_stops_an_image_and_costs_its_rung() -> None:
    # Image 0 is confident from the first rung, image 1 only at 10 crops, image 2 never.
    c = cache({"1": ([0, 1, 2], 0.4), "1n": ([0, 1, 2], 0.9), "10": ([0, 1, 3], 0.9), "144": ([0, 1, 2], 0.5)},
              targets=[0, 1, 2])
    c.probs["1n"][:, 1:] = one_hot([1, 3], 0.4)  # images 1 and 2 unsure at the first rung
    c.probs["10"][:, 2] = one_hot([3], 0.4)  # image 2 still unsure at 10 crops
    replay = policy.Replay(c, policy.walks(2)[0])  # 1x1 > 1x2 > 10x2 > 144x2
    outcome = replay.outcome(StoppingRule(default=0.5))
    assert outcome.stopped.tolist() == [0, 2, 3]
    assert outcome.evaluations.tolist() == [1, 20, 288]
    assert outcome.correct.tolist() == [True, True, True]
    assert outcome.row()["mean_evaluations"] == pytest.approx((1 + 20 + 288) / 3)


def test_calibration_keeps_the_top_rungs_error_at_the_least_cost() -> None:
    rng = np.random.default_rng(0)
    n = 60
    targets = rng.integers(0, CLASSES, n)
    wrong = (targets + 1) % CLASSES
    # The first rung is right on confident images only; 10 and 144 crops are right everywhere.
    confident = rng.random(n) < 0.7
    first = np.where(confident, targets, wrong)
    c = cache({"1": (list(first), 0.5), "1n": (list(first), 0.5), "10": (list(targets), 0.6),
               "144": (list(targets), 0.6)}, list(targets))
    c.probs["1n"][:, confident] = one_hot(list(targets[confident]), 0.95)
    thresholds, report = policy.calibrate(c)
    full = report[0]
    assert full["rungs"] == ["1x1", "1x2", "10x2", "144x2"]
    assert full["top1_error"] <= full["top_rung_top1_error"] == 0  # no error added
    # The confident images stop at 1 evaluation, the others at the 10-crop rung (20), never 288.
    assert full["mean_evaluations"] == pytest.approx((confident.sum() * 1 + (~confident).sum() * 20) / n)
    assert set(thresholds) >= {"1x1", "1x2", "10x2", "10x1"}
    loose, _ = policy.calibrate(c, max_error_increase=1.0)  # any error allowed: the first rung
    assert policy.Replay(c, policy.walks(2)[0]).outcome(StoppingRule(loose)).row()["mean_evaluations"] == 1


def test_the_frontier_only_keeps_points_no_cheaper_point_beats() -> None:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, CLASSES, 40)
    probs = {k: rng.dirichlet(np.ones(CLASSES), (2, 40)) for k in ("1", "1n", "10", "144")}
    rows = policy.frontier(policy.Replay(Cache(probs, targets, ["a", "b"]), policy.walks(2)[0]), count=6)
    costs = [r["mean_evaluations"] for r in rows]
    errors = [r["top1_error"] for r in rows]
    assert costs == sorted(costs) and errors == sorted(errors, reverse=True)  # cheaper, then more accurate


def test_the_replay_says_what_the_service_walk_does(tmp_path: Path) -> None:
    sessions = [ort.InferenceSession(tiny_model(i).SerializeToString()) for i in range(3)]
    members = [lambda rows, s=s: s.run(None, {"image": rows})[0] for s in sessions]
    data = tmp_path / "data"
    from model_export.synthetic import write_dataset

    write_dataset(data, classes=2, train_per_class=0, val_per_class=2, seed=4)
    images = probabilities.val_images(data)
    c = probabilities.collect(members, images, (1, 10, 144), names=["m0", "m1", "m2"], progress=False)
    replay = policy.Replay(c, policy.walks(3)[0])
    # Thresholds between the images' margins, so that the walks end on different rungs.
    rule = StoppingRule({"1x1": float(np.median(replay.margins[0])), "1x3": float(np.median(replay.margins[1]))},
                        default=2.0)
    expected = replay.outcome(rule)

    async def serve() -> list:
        queues = [MemberQueue(m, device=Device(1), name=f"m{i}", max_batch_size=8, max_delay_s=0.0,
                              max_queue_rows=4096) for i, m in enumerate(members)]
        scheduler = Ensemble(queues)
        scheduler.start()
        classifier = Classifier(scheduler, [(str(i), str(i)) for i in range(1000)], max_pixels=10**7,
                                max_aspect=32, threads=1)
        blobs = [Path(p).read_bytes() for p, _ in images.samples]
        walk = classifier.walk(blobs, crops=None, models=None, adaptive=True, partial=False, deadline=None, rule=rule)
        answer = await walk.run()
        await scheduler.stop()
        classifier.close()
        return answer.images

    answers = asyncio.run(serve())
    assert [a.evaluations for a in answers] == expected.evaluations.tolist()
    assert len(set(expected.evaluations.tolist())) > 1  # the images did stop on different rungs
    predicted = [int(np.argmax(a.probabilities)) for a in answers]
    assert [p == t for p, t in zip(predicted, c.targets, strict=True)] == expected.correct.tolist()
