"""crops=auto / ensemble=auto (service/ladder.py): the Table 3 Pareto ladder and the choice for
given deadlines and queue states, through the scheduler's real estimate with a fake cost model."""

from __future__ import annotations

import itertools

import pytest

from service.admission import CostModel, decide, estimate
from service.errors import ServiceError
from service.ladder import Mode, choose, climb, ladder


def labels(rungs: list[Mode]) -> list[str]:
    return [r.label for r in rungs]


def test_the_pareto_ladder_of_table_3() -> None:
    rungs = ladder(crops=None, models=None, members=7)
    assert labels(rungs) == ["144x7", "10x7", "1x7", "1x1"]
    assert [r.cost for r in rungs] == [1008, 70, 7, 1] and [r.top5_error for r in rungs] == [6.67, 7.62, 8.09, 10.07]


def test_a_fixed_dimension_is_held() -> None:
    assert labels(ladder(crops=None, models=1, members=7)) == ["144x1", "10x1", "1x1"]
    assert labels(ladder(crops=None, models=7, members=7)) == ["144x7", "10x7", "1x7"]
    assert labels(ladder(crops=10, models=None, members=7)) == ["10x7", "10x1"]
    assert labels(ladder(crops=None, models=3, members=7)) == ["144x3", "10x3", "1x3"]


def test_fewer_members_use_all_of_them_and_one_member_has_no_ensemble_rows() -> None:
    assert labels(ladder(crops=None, models=None, members=3)) == ["144x3", "10x3", "1x3", "1x1"]
    assert labels(ladder(crops=None, models=None, members=1)) == ["144x1", "10x1", "1x1"]


def pick(deadline_s: float, backlog: list[tuple[str, int]], *, max_wait_s: float = 8.0) -> str:
    """The rung for one image on 7 members of 0.05 s per row on 2 slots, now = 0."""
    cost, members = CostModel(), [f"m{i}" for i in range(7)]
    for m in members:
        cost.seed(m, 0.05)

    def fits(mode: Mode) -> bool:
        est = estimate(mode.crops, members[: mode.models], backlog, cost, slots=2, max_batch_size=2)
        try:
            decide(est, now=0.0, deadline=deadline_s, max_wait_s=max_wait_s)
        except ServiceError:
            return False
        return True

    return choose(ladder(crops=None, models=None, members=7), fits).label


@pytest.mark.parametrize(
    ("deadline_s", "expected"),
    [(60.0, "144x7"), (20.0, "10x7"), (1.0, "1x7"), (0.1, "1x1"), (0.01, "1x1")],
)
def test_the_most_accurate_rung_that_fits_an_idle_device(deadline_s: float, expected: str) -> None:
    # 144x7 = 1008 rows x 0.05 s / 2 slots = 25.2 s; 10x7 = 1.75 s; 1x7 = 0.175 s; 1x1 = 0.05 s
    assert pick(deadline_s, []) == expected  # 0.01 s: nothing fits, the cheapest goes to admission


def test_a_busy_device_steps_down_the_ladder() -> None:
    busy = [("m0", 200)] * 60  # 60 queued requests of 200 rows on the primary
    assert pick(60.0, []) == "144x7"
    assert pick(60.0, busy) == "1x7"  # 144x7 would wait 60 x 144 x 0.05 / 2 = 216 s; 10x7 waits 15 s > 8 s
    assert pick(60.0, busy, max_wait_s=20.0) == "10x7"


def test_the_adaptive_walks_climb_the_pareto_ladder() -> None:
    assert labels(climb(crops=None, models=None, members=7)) == ["1x1", "1x7", "10x7", "144x7"]
    assert labels(climb(crops=None, models=1, members=7)) == ["1x1", "10x1", "144x1"]
    assert labels(climb(crops=None, models=7, members=7)) == ["1x7", "10x7", "144x7"]
    assert labels(climb(crops=10, models=None, members=7)) == ["10x1", "10x7"]
    assert labels(climb(crops=None, models=None, members=1)) == ["1x1", "10x1", "144x1"]


def test_a_fixed_mode_asked_with_partial_walks_the_rungs_below_it() -> None:
    assert labels(climb(crops=144, models=7, members=7, anytime=True)) == ["1x1", "1x7", "10x7", "144x7"]
    assert labels(climb(crops=10, models=1, members=7, anytime=True)) == ["1x1", "10x1"]
    assert labels(climb(crops=1, models=3, members=7, anytime=True)) == ["1x1", "1x3"]
    assert labels(climb(crops=1, models=1, members=7, anytime=True)) == ["1x1"]


@pytest.mark.parametrize("crops", [None, 1, 10, 144])
@pytest.mark.parametrize("anytime", [False, True])
def test_every_walk_only_adds_work_and_ends_at_what_was_asked(crops: int | None, anytime: bool) -> None:
    for members, models in itertools.product(range(1, 8), [None, *range(1, 8)]):
        if models is not None and models > members or (crops and models and not anytime):
            continue
        walk = climb(crops=crops, models=models, members=members, anytime=anytime)  # raises if not
        assert (walk[-1].crops, walk[-1].models) == (crops or 144, models or members)
        assert [m.cost for m in walk] == sorted({m.cost for m in walk})
