"""`crops=auto` / `ensemble=auto`: the paper's Table 3 as a per-request budget (README, "crops=auto").

Each configuration of Table 3 costs crops x models evaluations per image and has a top-5 error;
the ones no cheaper configuration beats form the Pareto ladder 1x1, 1x7, 10x7, 144x7 (cost 1, 7,
70, 1008). A request that leaves crops or models to the service gets the most accurate rung whose
estimated completion fits its deadline (docs/googlenet.md 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    crops: int
    models: int  # 1 = the primary, else every member (the paper's 7)
    top5_error: float  # percent, Table 3

    @property
    def cost(self) -> int:
        return self.crops * self.models

    @property
    def label(self) -> str:
        return f"{self.crops}x{self.models}"


# Table 3 (models, crops, top-5 error %); 7 stands for "every member".
TABLE3 = ((1, 1, 10.07), (1, 10, 9.15), (1, 144, 7.89), (7, 1, 8.09), (7, 10, 7.62), (7, 144, 6.67))


def ladder(*, crops: int | None, models: int | None, members: int) -> list[Mode]:
    """The Pareto rungs with the fixed dimensions held (None = the service chooses), best first.

    With fewer than 7 members loaded the ensemble rows use all of them (or the `models` asked
    for); with one member, only the 1-model rows.
    """
    rows = []
    for seven, c, err in TABLE3:
        if models is None:
            if seven == 7 and members == 1:
                continue
            m = 1 if seven == 1 else members
        elif (models == 1) != (seven == 1):
            continue
        else:
            m = models
        if crops is None or c == crops:
            rows.append(Mode(c, m, err))
    rows.sort(key=lambda r: (r.cost, r.top5_error))
    pareto: list[Mode] = []
    for r in rows:  # keep a rung only if it beats every cheaper one
        if not pareto or r.top5_error < pareto[-1].top5_error:
            pareto.append(r)
    return pareto[::-1]


def choose(rungs: list[Mode], fits: Callable[[Mode], bool]) -> Mode:
    """The most accurate rung that fits; when none does, the cheapest (admission then refuses it)."""
    return next((r for r in rungs if fits(r)), rungs[-1])


def climb(*, crops: int | None, models: int | None, members: int, anytime: bool = False) -> list[Mode]:
    """The rungs an adaptive walk climbs, cheapest first (service/adaptive.py). None: the dimension
    is adaptive; `anytime` (partial=true): the fixed dimensions climb too, from 1 up to their value."""
    top_crops, top_models = crops or max(c for _, c, _ in TABLE3), models or members
    modes = ladder(
        crops=None if crops is None or anytime else crops,
        models=None if models is None or anytime else models,
        members=top_models,
    )
    walk = [m for m in modes[::-1] if m.crops <= top_crops]
    if any(b.crops < a.crops or b.models < a.models for a, b in zip(walk, walk[1:], strict=False)):
        raise AssertionError(f"the ladder {[m.label for m in walk]} is not a walk: a rung would drop work")
    return walk
