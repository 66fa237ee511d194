"""Admission by time (service/admission.py): the estimate's arithmetic and the decision, with a fake
clock (plain numbers) and a fake cost model (seeded costs); no sleeps, no timing."""

from __future__ import annotations

import pytest

from service.admission import CostModel, Estimate, PreprocessCost, decide, estimate
from service.errors import Overloaded, TooCostly


def costs(**per_row: float) -> CostModel:
    cost = CostModel()
    for member, seconds in per_row.items():
        cost.seed(member, seconds)
    return cost


def test_an_idle_device_has_no_wait_and_spreads_the_request_over_its_slots() -> None:
    est = estimate(144, ["a"], [], costs(a=0.05), slots=2, max_batch_size=2)
    assert est.wait_s == 0 and est.service_s == pytest.approx(144 * 0.05 / 2)


def test_a_one_row_request_uses_one_slot_however_many_there_are() -> None:
    est = estimate(1, ["a"], [], costs(a=0.05), slots=4, max_batch_size=2)
    assert est.service_s == pytest.approx(0.05)  # one batch cannot be split


def test_the_wait_counts_min_of_remaining_and_k_rows_of_each_queued_request() -> None:
    backlog = [("a", 1008), ("a", 1), ("b", 5)]  # a big request, a small one, one on another member
    est = estimate(10, ["a"], backlog, costs(a=0.05, b=0.1), slots=2, max_batch_size=2)
    assert est.wait_s == pytest.approx((10 * 0.05 + 1 * 0.05 + 5 * 0.1) / 2)
    assert est.completion_s == pytest.approx(est.wait_s + est.service_s)


def test_an_ensemble_request_costs_every_member() -> None:
    est = estimate(10, ["a", "b"], [], costs(a=0.05, b=0.1), slots=2, max_batch_size=2)
    assert est.service_s == pytest.approx(10 * 0.15 / 2)


def test_a_big_admitted_request_adds_only_k_rows_to_a_small_ones_wait() -> None:
    alone = estimate(1, ["a"], [], costs(a=0.05), slots=2, max_batch_size=2)
    beside = estimate(1, ["a"], [("a", 16_128)], costs(a=0.05), slots=2, max_batch_size=2)
    assert beside.wait_s == pytest.approx(0.05 / 2) and beside.service_s == alone.service_s


def test_the_cost_model_is_seeded_then_follows_real_batches() -> None:
    cost = CostModel(window=3, default_s=0.2)
    assert cost.per_row("a") == 0.2 and cost.fixed("a") == 0.0  # nothing known yet
    cost.observe("a", 2, 0.2)  # the first batch replaces the default: 0.1 s per row
    assert cost.per_row("a") == pytest.approx(0.1)
    cost.seed("b", 0.001, fixed_s=0.0005)  # a GPU: a batch of 1 costs 1.5 ms, of 128 rows 128.5 ms
    assert cost.work("b", 1, 128) == pytest.approx(0.0015)
    assert cost.work("b", 300, 128) == pytest.approx(3 * 0.0005 + 300 * 0.001)  # three batches


def test_one_cold_run_does_not_move_the_estimate_and_a_lasting_change_does() -> None:
    cost = CostModel(window=5)
    cost.seed("a", 0.001, fixed_s=0.0005)
    cost.observe("a", 1, 3.0)  # a first run on a cold GPU: 2000 times the seed
    cost.observe("a", 128, 0.1285)  # then as measured
    assert cost.per_row("a") == pytest.approx(0.001) and cost.fixed("a") == pytest.approx(0.0005)
    for _ in range(3):  # the host got twice as slow, and stays so
        cost.observe("a", 64, 2 * (0.0005 + 64 * 0.001))
    assert cost.per_row("a") == pytest.approx(0.002) and cost.fixed("a") == pytest.approx(0.001)


def test_the_decode_cost_is_a_median_of_recent_images() -> None:
    prep = PreprocessCost(window=5, default_s=0.01)
    assert prep.per_image(144) == 0.01
    prep.seed(1, 0.004)
    for seconds in (0.005, 9.0, 0.003):  # one hostile image among ordinary ones
        prep.observe(1, seconds)
    assert prep.per_image(1) == pytest.approx(0.0045)


def test_preparing_overlaps_the_wait_and_precedes_the_service() -> None:
    assert Estimate(wait_s=1.0, service_s=0.5, prepare_s=0.2).completion_s == 1.5
    assert Estimate(wait_s=0.1, service_s=0.5, prepare_s=0.2).completion_s == pytest.approx(0.7)
def test_admitted_when_the_wait_and_the_completion_fit() -> None:
    decide(Estimate(wait_s=1.0, service_s=2.0), now=100.0, deadline=103.0, max_wait_s=1.0)
    decide(Estimate(wait_s=5.0, service_s=2.0), now=100.0, deadline=None, max_wait_s=8.0)


def test_a_wait_past_the_bound_is_a_503_with_retry_after_from_the_estimate() -> None:
    with pytest.raises(Overloaded) as refused:
        decide(Estimate(wait_s=10.5, service_s=0.1), now=0.0, deadline=60.0, max_wait_s=8.0)
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "3"  # ceil(10.5 - 8)


def test_a_completion_past_the_deadline_is_a_503_when_an_idle_device_could_make_it() -> None:
    with pytest.raises(Overloaded) as refused:
        decide(Estimate(wait_s=4.0, service_s=2.0), now=50.0, deadline=55.0, max_wait_s=8.0)
    assert refused.value.headers["Retry-After"] == "1"


def test_a_request_no_idle_device_could_finish_in_time_is_a_422_saying_how_long() -> None:
    with pytest.raises(TooCostly, match="about 25.2 s") as refused:
        decide(Estimate(wait_s=0.0, service_s=25.2), now=0.0, deadline=20.0, max_wait_s=8.0)
    assert refused.value.status == 422 and refused.value.code == "deadline_infeasible"
