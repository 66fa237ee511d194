"""`python -m loadtest versus` end to end: both servers measured in flipped rounds, the section
written into the page, and goals that name the misses."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import machine
from loadtest.__main__ import main
from loadtest.versus import goals
from tests.conftest import make_image


def test_versus_measures_both_servers_and_writes_its_section(tiny_repo: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(4):
        (images / f"{seed}.jpg").write_bytes(make_image(seed=seed))
    page = tmp_path / "benchmarks.md"
    code = main(["versus", "--model-repository", str(tiny_repo), "--images", str(images), "--concurrency", "1", "2",
                 "--duration", "0.4", "--warmup", "0.1", "--rounds", "2", "--ceiling-s", "0.1", "--label", "test",
                 "--output", str(page)])
    assert code == 0
    text = page.read_text()
    assert "<!-- versus test: written by python -m loadtest versus -->" in text
    assert "`python -m loadtest versus --model-repository" in text and "`python -m loadtest.baseline`" in text
    report = json.loads((machine.REPO_ROOT / "runs" / "versus-test.json").read_text())
    assert [r["concurrency"] for r in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert len(row["ratios"]) == 2 and row["service"]["errors"] == row["other"]["errors"] == 0
        assert row["service"]["img_per_s"] > 0 and row["other"]["img_per_s"] > 0
    assert len(report["goals"]) == 3  # throughput at each level and p50 at one client (share and p99 from 4 and 16)
    main(["versus", "--model-repository", str(tiny_repo), "--images", str(images), "--concurrency", "1",
          "--duration", "0.2", "--warmup", "0", "--rounds", "1", "--ceiling-s", "0.1", "--label", "test",
          "--output", str(page)])
    assert page.read_text().count("<!-- versus test:") == 1  # a rerun replaces its section


def _row(c: int, service: float, other: float, ratios: list[float], p50: float = 10, p99: float = 20) -> dict:
    side = {"img_per_s": service, "p50_ms": p50, "p99_ms": p99}
    return {"concurrency": c, "ratios": ratios, "service": side,
            "other": {"img_per_s": other, "p50_ms": 10.0, "p99_ms": 20.0}}


def test_a_round_below_the_other_server_is_a_miss_even_when_the_mean_is_ahead() -> None:
    report = {"limit_img_per_s": 100.0, "rows": [_row(1, 50, 49, [1.2, 0.9], p50=11), _row(16, 95, 80, [1.1, 1.2])]}
    verdicts = goals(report)
    missed = [text for met, text in verdicts if not met]
    assert any(text.startswith("1 clients: throughput") for text in missed)  # one round at 0.9x
    assert any(text.startswith("1 client: p50 11.0 ms") for text in missed)
    met = [text for met, text in verdicts if met]
    assert any(text.startswith("16 clients: throughput") for text in met)
    assert any("95% of the 100.0 img/s" in text for text in met)
