"""The service's adaptive walks (service/adaptive.py) replayed on cached probabilities: what each
stopping threshold costs in evaluations and in error, and the thresholds `calibrate` chooses.

Every member's crop-averaged probabilities at each rung's crops are computed once per image
(`probabilities.collect`); a walk's answer at a rung is then their mean over the rung's members, exactly
as the service averages a complete rung, and its cost the rung's crops x members (nothing runs twice).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from model_export.probabilities import Cache
from service.ladder import Mode, climb
from service.stopping import StoppingRule, margin

NEVER = 2.0  # a margin threshold above 1 stops nothing


@dataclass(frozen=True)
class Outcome:
    correct: np.ndarray  # [images] bool: top-1 right
    top5: np.ndarray  # [images] bool
    evaluations: np.ndarray  # [images] crops x members run
    stopped: np.ndarray  # [images] index of the rung the image stopped at

    def row(self) -> dict[str, float]:
        return {
            "top1_error": float(1 - self.correct.mean()),
            "top5_error": float(1 - self.top5.mean()),
            "mean_evaluations": float(self.evaluations.mean()),
            "p99_evaluations": float(np.percentile(self.evaluations, 99)),
        }


def walks(members: int) -> list[list[Mode]]:
    """The walks `calibrate` tunes, in order: both dimensions adaptive, then crops with one member,
    then members at 10 and at 144 crops (their rungs' thresholds are shared by label)."""
    return [
        climb(crops=None, models=None, members=members),
        climb(crops=None, models=1, members=members),
        climb(crops=10, models=None, members=members),
        climb(crops=144, models=None, members=members),
    ]


class Replay:
    """One walk over the cached images: the average, margin and cost at each of its rungs."""

    def __init__(self, cache: Cache, walk: list[Mode]) -> None:
        nested = len({m.crops for m in walk}) > 1
        self.walk, self.targets = walk, cache.targets
        averages = [cache.rung(m.crops, m.models, nested=nested) for m in walk]
        self.margins = np.stack([margin(a) for a in averages])  # rungs x images
        ranked = [np.argsort(-a, axis=1)[:, :5] for a in averages]
        self.correct = np.stack([r[:, 0] == self.targets for r in ranked])
        self.top5 = np.stack([(r == self.targets[:, None]).any(axis=1) for r in ranked])
        self.costs = np.array([m.cost for m in walk])

    def stops(self, thresholds: list[float]) -> np.ndarray:
        """[images]: the rung each image stops at, under thresholds for every rung but the last."""
        stop = np.full(len(self.targets), len(self.walk) - 1)
        for k in range(len(self.walk) - 2, -1, -1):  # the earliest confident rung wins
            stop[self.margins[k] >= thresholds[k]] = k
        return stop

    def outcome(self, rule: StoppingRule) -> Outcome:
        stop = self.stops([rule.threshold(m.label) for m in self.walk[:-1]])
        images = np.arange(len(stop))
        return Outcome(self.correct[stop, images], self.top5[stop, images], self.costs[stop], stop)

    def candidates(self, k: int, count: int = 40) -> np.ndarray:
        """Thresholds worth trying at rung k: margin quantiles of the images, and never."""
        return np.unique(np.append(np.quantile(self.margins[k], np.linspace(0, 1, count)), NEVER))


def calibrate(
    cache: Cache, *, max_error_increase: float = 0.0, count: int = 40
) -> tuple[dict[str, float], list[dict]]:
    """Thresholds by rung label: for each walk (`walks`), the cheapest (mean evaluations) whose
    top-1 error is at most its top rung's plus `max_error_increase` (a fraction); labels an earlier
    walk set are kept. Returns the thresholds and, per walk, what they measured."""
    thresholds: dict[str, float] = {}
    report = []
    for walk in walks(len(cache.members)):
        replay = Replay(cache, walk)
        labels = [m.label for m in walk[:-1]]
        free = [k for k, label in enumerate(labels) if label not in thresholds]
        bound = 1 - replay.correct[-1].mean() + max_error_increase + 1e-12
        best: tuple[float, float, list[float]] | None = None
        grids = [replay.candidates(k, count) for k in free]
        for choice in itertools.product(*grids):
            chosen = [thresholds.get(label, 0.0) for label in labels]
            for k, value in zip(free, choice, strict=True):
                chosen[k] = float(value)
            stop = replay.stops(chosen)
            error = 1 - replay.correct[stop, np.arange(len(stop))].mean()
            cost = replay.costs[stop].mean()
            if error <= bound and (best is None or (cost, error) < best[:2]):
                best = (cost, error, chosen)
        chosen = best[2] if best else [NEVER] * len(labels)  # the top rung always meets its own bound
        thresholds |= {label: chosen[k] for k, label in enumerate(labels)}
        rule = StoppingRule(thresholds)
        report.append({"rungs": [m.label for m in walk], "top_rung_top1_error": float(1 - replay.correct[-1].mean()),
                       **replay.outcome(rule).row()})
    return thresholds, report


def frontier(replay: Replay, count: int = 20) -> list[dict]:
    """The cheapest mean evaluations at each top-1 error the walk's thresholds reach (one shared
    threshold scaled per rung is not assumed: every combination of `count` quantiles is tried)."""
    best: dict[float, tuple[float, list[float]]] = {}
    grids = [replay.candidates(k, count) for k in range(len(replay.walk) - 1)]
    images = np.arange(len(replay.targets))
    for choice in itertools.product(*grids):
        stop = replay.stops(list(choice))
        error = round(float(1 - replay.correct[stop, images].mean()), 6)
        cost = float(replay.costs[stop].mean())
        if error not in best or cost < best[error][0]:
            best[error] = (cost, [float(c) for c in choice])
    rows, cheapest = [], np.inf
    for error in sorted(best):  # keep a point only if no lower error is as cheap
        cost, choice = best[error]
        if cost < cheapest:
            cheapest = cost
            rows.append({"top1_error": error, "mean_evaluations": cost, "thresholds": choice})
    return rows[::-1]


def sweep(cache: Cache, walk: list[Mode], margins: list[float]) -> list[dict]:
    """One margin threshold at every rung, each of `margins`: the adaptive curve of the Pareto plot."""
    replay = Replay(cache, walk)
    return [{"margin": m, **replay.outcome(StoppingRule(default=m)).row()} for m in margins]
