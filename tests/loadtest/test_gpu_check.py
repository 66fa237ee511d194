"""The GPU check's CPU path on tiny models: the same script the GPU host runs, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.__main__ import main


def test_gpu_check_measures_the_ceiling_then_every_mode(tiny_repo: Path, tmp_path: Path, capsys) -> None:
    code = main(["gpu-check", "--model-repository", str(tiny_repo), "--providers", "cpu", "--quick",
                 "--batches", "1", "2", "--modes", "1x1", "144x1", "1x3", "1x7", "--concurrency", "4",
                 "--check-images", "2", "--output", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["provider"] == "cpu" and [p["batch"] for p in result["ceiling"][0]["points"]] == [1, 2]
    assert set(result["service"]) == {"1x1", "144x1", "1x3"}  # 1x7 needs 7 members: left out
    for name, row in result["service"].items():
        assert row["images_per_s"] > 0 and row["errors"] == 0, name
        assert 0 < row["of_ceiling"] and row["bound"] in ("model", "decode + crop")
    assert result["service"]["144x1"]["concurrency"] == 4
    assert result["baseline_1x1"]["images_per_s"] > 0
    assert result["ready_s"] > 0 and result["burst"]["count"] == 16
    assert result["burst"]["ok"] + result["burst"]["shed"] == 16 and result["burst"]["server_errors"] == 0
    for name, row in result["correctness"].items():  # the CPU service against the CPU reference
        assert row["errors"] == 0 and row["max_abs"] < 1e-5, name
    for name, alone in result["alone"].items():
        assert alone["n"] == 3 and alone["p50_ms"]["total"] > 0 and alone["runs"], name
    assert result["memory"]["peak_mib"] is None  # no GPU here: no figure rather than a zero
    table = (tmp_path / "gpu-check.md").read_text()
    assert "| 144x1 |" in table and "naive baseline" in table and table in capsys.readouterr().out
