"""loadtest/anytime.py: what counts as admitted and as answered in time (the benchmark's own arithmetic)."""

from __future__ import annotations

from loadtest.anytime import Answer, render, summarise


def test_refusals_are_not_admitted_and_late_or_failed_answers_are_not_in_time() -> None:
    answers = [
        Answer(200, None, 120.0, False, 70, True), Answer(200, None, 980.0, True, 7, False),  # one partial
        Answer(200, None, 1020.0, False, 70, True),  # a 200 after its deadline: admitted, not in time
        Answer(504, "deadline_exceeded", 1001.0, False, None),
        Answer(503, "overloaded", 5.0, False, None), Answer(422, "deadline_infeasible", 4.0, False, None),
    ]
    s = summarise(answers, deadline_ms=1000)
    assert (s["sent"], s["admitted"], s["answered_200"], s["in_time_200"]) == (6, 4, 3, 2)
    assert s["in_time_share_of_admitted"] == 0.5 and s["partial_share_of_200"] == round(1 / 3, 4)
    assert s["statuses"] == {"200": 3, "504 deadline_exceeded": 1, "503 overloaded": 1, "422 deadline_infeasible": 1}
    assert s["mean_evaluations_of_200"] == 49.0 and s["top1_error_of_200"] == round(1 / 3, 4)
    result = {"mode": "crops=10&ensemble=true", "deadline_ms": 1000, "capacity_rps": 5, "offered_rps": 10,
              "overload": 2, "seconds": 20, "rounds": 3, "phases": {"partial=true": s}}
    assert "| partial=true | 6 |" in render(result) and "2 / 4 = 50.00%" in render(result)
