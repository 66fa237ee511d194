"""The GPU check's CPU path on tiny models: the same script the GPU host runs, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.__main__ import main


def test_gpu_check_measures_the_ceiling_then_every_mode(tiny_repo: Path, tmp_path: Path, capsys) -> None:
    code = main(["gpu-check", "--model-repository", str(tiny_repo), "--providers", "cpu", "--quick",
                 "--batches", "1", "2", "--modes", "1x1", "144x1", "1x3", "1x7", "--concurrency", "4",
                 "--output", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["provider"] == "cpu" and [p["batch"] for p in result["ceiling"]] == [1, 2]
    assert set(result["service"]) == {"1x1", "144x1", "1x3"}  # 1x7 needs 7 members: left out
    for name, row in result["service"].items():
        assert row["images_per_s"] > 0 and row["errors"] == 0, name
        assert 0 < row["of_ceiling"] and row["bound"] in ("model", "decode + crop")
    assert result["service"]["144x1"]["concurrency"] == 4
    assert result["baseline_1x1"]["images_per_s"] > 0
    table = (tmp_path / "gpu-check.md").read_text()
    assert "| 144x1 |" in table and "naive baseline" in table and table in capsys.readouterr().out
