"""`python -m loadtest run` and `sweep` end to end against the real test server: files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.__main__ import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_run_writes_the_result_and_a_png_report(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["run", "--url", server.url, "--concurrency", "2", "--requests", "8", "--warmup", "0",
                 "--mix", "1x1:0.75,10x3:0.25", "--quiet", "--output", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["ok"] == 8 and result["spec"]["loop"] == "closed"
    assert result["server"]["batches"] >= 1
    assert (out / "report.png").read_bytes().startswith(PNG)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["requests"] == 8 and summary["outcomes"] == {"200": 8}


def test_run_over_the_v2_protocol(server, tmp_path: Path) -> None:
    code = main(["run", "--url", server.url, "--protocol", "v2", "--v2-model", "tiny", "--rate", "40",
                 "--requests", "6", "--warmup", "0", "--mix", "1x1,10x2", "--quiet", "--output", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["outcomes"] == {"200": 6} and result["spec"]["loop"] == "open"


def test_a_bad_mix_exits_2_with_the_reason(server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--url", server.url, "--concurrency", "1", "--mix", "7x1", "--quiet"]) == 2
    assert "crops must be one of" in capsys.readouterr().err


def test_sweep_stops_where_the_objective_breaks(server, tmp_path: Path) -> None:
    # An objective no server meets: the first step breaks it, so there is no capacity figure.
    code = main(["sweep", "--url", server.url, "--start", "20", "--step", "20", "--steps", "3", "--duration", "0.5",
                 "--warmup", "0", "--objective-p99-ms", "0.001", "--quiet", "--output", str(tmp_path / "strict")])
    assert code == 0
    strict = json.loads((tmp_path / "strict" / "sweep.json").read_text())
    assert len(strict["steps"]) == 1 and strict["capacity_rps"] is None
    assert strict["broke_at"]["offered_rps"] == 20 and "p99" in strict["broke_at"]["reason"]

    main(["sweep", "--url", server.url, "--start", "10", "--factor", "2", "--steps", "2", "--duration", "0.5",
          "--warmup", "0", "--objective-p99-ms", "30000", "--quiet", "--output", str(tmp_path / "easy")])
    easy = json.loads((tmp_path / "easy" / "sweep.json").read_text())
    assert [s["offered_rps"] for s in easy["steps"]] == [10, 20]
    assert all(s["verdict"] == "ok" for s in easy["steps"]) and easy["capacity_rps"] > 0
    assert (tmp_path / "easy" / "sweep.png").read_bytes().startswith(PNG)
