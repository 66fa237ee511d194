"""The benchmark suite end to end on tiny models (seconds-long phases: the pipeline, not the speed):
service and baseline as real processes, the document, its plots, and no machine paths in them."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import profiling
from loadtest.bench import BenchConfig, run_bench
from loadtest.benchdoc import NOTES_END, NOTES_START


def test_bench_writes_the_report_with_goals_tables_and_plots(tiny_repo: Path, tmp_path: Path) -> None:
    output, plots = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "benchmarks"
    output.parent.mkdir()
    output.write_text(f"old\n{NOTES_START}\nhand-written analysis\n{NOTES_END}\n")
    config = BenchConfig(model_repository=tiny_repo, output=output, plots=plots, concurrencies=(1, 4),
                         modes=("10x1", "1x3", "1x9"), phase_s=0.8, warmup_s=0.2, scale=0.1, ceiling_s=0.2,
                         profile_s=1.0, command="python -m loadtest bench --quick", progress=False)
    assert run_bench(config) == 0

    text = output.read_text()
    for heading in ("## Goals", "## (a) The model alone", "## (c, d) The service and the naive baseline",
                    "## Open loop", "## (c) Every mode", "## Where the service's time goes"):
        assert heading in text
    assert "hand-written analysis" in text and "old\n" not in text  # the notes survive a rerun
    assert "1x9" not in text  # more members than the repository has: left out
    assert str(tmp_path) not in text and str(tiny_repo) not in text
    for name in ("model", "concurrency", "cdf", "overload"):
        assert f"]({'benchmarks'}/{name}.png)" in text
        assert (plots / f"{name}.png").stat().st_size > 1000

    report = json.loads((plots / "results.json").read_text())
    assert str(tmp_path) not in (plots / "results.json").read_text()
    service, baseline = report["service"], report["baseline"]
    assert set(service["closed"]) == {"1", "4"} and set(service["modes"]) == {"10x1", "1x3"}
    assert all(r["ok"] > 0 for r in service["closed"].values())
    assert all(r["ok"] == r["requests"] for r in service["modes"].values())
    assert baseline["closed"]["4"]["server"] is None  # the baseline has no /metrics
    assert service["closed"]["4"]["server"]["mean_batch_rows"] >= 1
    assert report["limits"]["1x1"]["images_per_s"] > report["limits"]["10x1"]["images_per_s"] > 0
    if profiling.py_spy():
        assert report["profile"]["cores"], "py-spy is installed but sampled nothing"
