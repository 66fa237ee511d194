"""loadtest/benchdoc.py: docs/benchmarks.md from a bench report, its kept notes, and the trimmed JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loadtest import benchdoc, goals
from loadtest.benchdoc import NOTES_END, NOTES_START, render, write
from loadtest.machine import REPO_ROOT

PLOTS = {name: f"b/{name}.png" for name in ("model", "concurrency", "cdf", "overload")}


def _run(rps: float, p50: float, p99: float, *, server: dict | None = None, outcomes: dict | None = None,
         offered: float | None = None, trend: tuple[float, float] = (100.0, 100.0)) -> dict:
    middle, last = trend
    means = [middle] * 6 + [last] * 3  # by third of the run: first, middle, last
    by_send = [{"t": t, "ok": 10, "mean_ms": m} for t, m in enumerate(means)]
    return {
        "throughput_rps": rps, "offered_rps": offered or rps, "ok": int(rps * 10), "requests": int(rps * 10),
        "evaluations_per_s": rps * 10, "outcomes": outcomes or {"200": int(rps * 10)},
        "latency_ms": {"p50": p50, "p99": p99, "max": p99 * 2}, "server": server,
        "cpu": {"server_cores": 1.5, "generator_cores": 0.25, "other_cores": 0.05},
        "cdf": [(p50, 0.5), (p99, 1.0)], "timeline": [{"t": 0, "ok": 1}], "latency_by_send": by_send,
    }


SERVER = {"mean_batch_rows": 1.75, "queue_wait_ms": {"p50": 0.4}}


def _report(*, baseline: bool = True, profile: bool = True) -> dict:
    service = {
        "closed": {1: _run(40, 20, 30, server=SERVER), 8: _run(95, 80, 150, server=SERVER),
                   32: _run(96, 300, 420, server=SERVER)},
        "at_70": _run(67, 20, 50),
        "overload": _run(100, 900, 1500, offered=150, outcomes={"200": 900, "503": 600}),
        "modes": {"10x1": _run(9.5, 100, 200, server=SERVER)}, "capacity_rps": 96.0,
    }
    report = {
        "machine": {"cpu": "Test CPU 3000", "cores": 2, "simd": "avx2, fma", "memory_gib": 7.7,
                    "os": "Linux-6", "python": "3.11.7", "onnxruntime": "1.20.0",
                    "date": "2026-01-02 03:04 UTC", "commit": "abc1234", "other_cores_at_start": 0.03},
        "limits": {"1x1": {"images_per_s": 100.0, "evaluations": 1, "model_s_per_image": 0.018,
                           "preprocess_s_per_image": 0.002},
                   "10x1": {"images_per_s": 10.0, "evaluations": 10, "model_s_per_image": 0.18,
                            "preprocess_s_per_image": 0.02}},
        "repository": {"name": "googlenet", "members": 7, "trained": False},
        "duration_s": 600.0,
        "command": f"python -m loadtest bench --model-repository {REPO_ROOT / 'model_repository'} "
                   f"--images {REPO_ROOT.parent / 'shared' / 'data' / 'imagenet-samples'}",
        "images": {"count": 100, "source": str(REPO_ROOT.parent / "shared" / "data" / "imagenet-samples")},
        "model": {"points": [{"streams": 2, "intra_op_threads": 1, "batch": b, "images_per_s": 1234.5 * b / 8,
                              "cpu_cores": 1.98, "ms_per_batch": 3.25 * b} for b in (1, 8)]
                  # one request alone: one stream on both cores, the floor of the c=1 goal
                  + [{"streams": 1, "intra_op_threads": 2, "batch": 1, "images_per_s": 400.0,
                      "cpu_cores": 1.9, "ms_per_batch": 2.5}],
                  "best": {"images_per_s": 1234.5, "batch": 8, "streams": 2}},
        "preprocess_ms": {1: 2.0, 10: 9.5, 144: 120.25},
        "service": service,
        "baseline": {"closed": {1: _run(30, 30, 45), 8: _run(48, 160, 400), 32: _run(47, 650, 900)},
                     "at_70": _run(33, 30, 60), "capacity_rps": 48.0,
                     "overload": _run(45, 5000, 9000, offered=150, trend=(1000.0, 2500.0))}
        if baseline else None,
        "profile": {"seconds": 10.0, "concurrency": 8, "cores": {"onnxruntime": 1.5, "decode": 0.25},
                    "top_functions": [("run (onnxruntime)", 1.25)]} if profile else None,
    }
    return report


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_the_header_describes_the_machine_and_the_run() -> None:
    text = render(_report(), PLOTS, "my notes")
    assert text.startswith("# Benchmarks\n")
    assert "- Machine: Test CPU 3000, 2 cores (avx2, fma), 7.7 GiB, Linux-6" in text
    assert "- Software: Python 3.11.7, ONNX Runtime 1.20.0; commit abc1234" in text
    assert "the run took 10.0 min" in text
    assert "7 members (random-init weights: speed is the same, answers are noise)" in text
    assert "Other load on the machine when the run started: 0.03 cores" in text


def test_paths_are_shown_as_a_checkout_sees_them() -> None:
    text = render(_report(), PLOTS, "")
    assert "--model-repository model_repository --images ../shared/data/imagenet-samples`" in text
    assert "- Images: 100 from `../shared/data/imagenet-samples`" in text
    assert str(REPO_ROOT) not in text


def test_a_path_outside_the_checkout_shows_only_its_name() -> None:
    report = _report()
    report["command"] = "python -m loadtest bench --output /nowhere/near/results/benchmarks.md"
    assert "`python -m loadtest bench --output benchmarks.md`" in render(report, PLOTS, "")


def test_the_goals_table_has_a_row_per_goal_with_its_verdict() -> None:
    report = _report()
    section = _section(render(report, PLOTS, ""), "## Goals")
    rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| goal")]
    expected = [f"| {g.goal} | {g.measured} | {'yes' if g.met else '**no**'} |" for g in goals.evaluate(report)]
    assert rows == expected and len(rows) >= 5  # what the goals are is tests/loadtest/test_goals.py's
    assert "| 10x1: >= 95% of its own limit | 9.5 of 10 img/s = 95% | yes |" in rows


def test_the_limit_section_has_the_model_points_and_the_preprocessing() -> None:
    section = _section(render(_report(), PLOTS, ""), "## (a) The model alone")
    assert "| 2 stream(s) x 1 intra-op thread(s) | 8 | 1,234.5 | 1.98 | 26.0 |" in section
    assert "| 144 | 120.25 |" in section
    assert "For 1 crop: 2 / (18.00 + 2.00 ms) = **100.0 img/s**." in section
    assert "![model alone by batch size](b/model.png)" in section


def test_the_closed_loop_table_compares_the_service_with_the_baseline() -> None:
    section = _section(render(_report(), PLOTS, ""), "## (c, d)")
    row = next(r for r in section.splitlines() if r.startswith("| 8 |"))
    assert row == ("| 8 | 95.0 | 95% | 80.0 | 150.0 | 1.75 | 0.4 | 48.0 | 160.0 | 400.0 | 1.98x "
                   "| 1.50 / 0.25 / 0.05 |")


def test_without_a_baseline_its_columns_are_dashes_and_its_goals_are_gone() -> None:
    text = render(_report(baseline=False), PLOTS, "")
    row = next(r for r in _section(text, "## (c, d)").splitlines() if r.startswith("| 8 |"))
    assert row.endswith("| - | - | - | - | 1.50 / 0.25 / 0.05 |")
    assert "naive baseline's (best" not in _section(text, "## Goals")
    assert "| baseline |" not in _section(text, "## Open loop")


def test_the_open_loop_table_lists_errors_and_the_latency_trend() -> None:
    section = _section(render(_report(), PLOTS, ""), "## Open loop")
    rows = [r for r in section.splitlines() if r.startswith("| 70%") or r.startswith("| 150%")]
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| 70% of capacity", "service"], ["| 70% of capacity", "baseline"],
        ["| 150% of capacity", "service"], ["| 150% of capacity", "baseline"],
    ]
    assert rows[2].endswith('| {"503": 600} | 1.00x |')
    assert rows[3].endswith("| none | 2.50x |")


def test_the_modes_table_starts_with_the_best_one_crop_run() -> None:
    section = _section(render(_report(), PLOTS, ""), "## (c) Every mode")
    rows = [r for r in section.splitlines() if re.match(r"\| \d+x\d+ \|", r)]
    assert rows[0].startswith("| 1x1 | 1 | 960 | 96.00 | 960.0 | 100.00 | 96% | 0.30 |")
    assert rows[1].startswith("| 10x1 | 10 | 95 | 9.50 | 95.0 | 10.00 | 95% | 0.10 |")


def test_the_profile_section_or_why_there_is_none() -> None:
    with_profile = _section(render(_report(), PLOTS, ""), "## Where the service's time goes")
    assert "py-spy, 10 s at concurrency 8" in with_profile and "| decode | 0.25 |" in with_profile
    assert "- `run (onnxruntime)`: 1.25" in with_profile
    without = _section(render(_report(profile=False), PLOTS, ""), "## Where the service's time goes")
    assert "No profile (py-spy unavailable or `--no-profile`)." in without


def test_the_notes_sit_between_their_markers() -> None:
    text = render(_report(), PLOTS, "line one\nline two")
    assert text.endswith(f"## Notes\n\n{NOTES_START}\nline one\nline two\n{NOTES_END}\n")


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [(None, 1, "-"), (float("nan"), 1, "-"), (1234.56, 1, "1,234.6"), (0.5, 2, "0.50")],
)
def test_numbers_are_shown_with_separators_and_missing_ones_as_dashes(value: float | None, digits: int,
                                                                      shown: str) -> None:
    assert benchdoc._f(value, digits) == shown


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    docs = tmp_path_factory.mktemp("checkout") / "docs"
    docs.mkdir()
    output, plots_dir = docs / "benchmarks.md", docs / "benchmarks"
    output.write_text(f"an older run\n{NOTES_START}\n\nkept analysis\n\n{NOTES_END}\nold tail\n")
    write(_report(), output, plots_dir)
    return output, plots_dir


def test_write_keeps_the_hand_written_notes(written: tuple[Path, Path]) -> None:
    text = written[0].read_text()
    assert f"{NOTES_START}\nkept analysis\n{NOTES_END}\n" in text  # blank lines around them are trimmed
    assert "an older run" not in text and "old tail" not in text


def test_write_links_the_plots_relative_to_the_document(written: tuple[Path, Path]) -> None:
    output, plots_dir = written
    text = output.read_text()
    for name in ("model", "concurrency", "cdf", "overload"):
        assert f"](benchmarks/{name}.png)" in text
        assert (plots_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_saves_the_report_without_per_second_series(written: tuple[Path, Path]) -> None:
    report = json.loads((written[1] / "results.json").read_text())
    assert report["images"]["source"] == "../shared/data/imagenet-samples"
    for run in (report["service"]["closed"]["8"], report["service"]["overload"], report["baseline"]["at_70"]):
        assert not {"cdf", "timeline", "latency_by_send"} & set(run)
        assert run["throughput_rps"] > 0


def test_write_saves_no_machine_paths(written: tuple[Path, Path]) -> None:
    assert str(REPO_ROOT.parent) not in (written[1] / "results.json").read_text()


def test_a_first_run_gets_a_placeholder_note(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("no markers here\n")
    write(_report(baseline=False, profile=False), output, tmp_path / "plots")
    assert "_No notes yet: add the analysis of this run here" in output.read_text()
