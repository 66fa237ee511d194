"""`summary` reproduces the spec's arithmetic and names the rows where the paper's Table 1 disagrees."""

from __future__ import annotations

import json

from model_export.__main__ import main
from model_export.model import GoogLeNetConfig
from model_export.summary import summarize


def test_paper_totals_match_the_arithmetic_of_the_spec() -> None:
    s = summarize(GoogLeNetConfig(variant="paper"))
    t = s["totals"]
    assert t["params"] == 6_998_552 and t["weights"] == 6_990_272  # docs/googlenet.md 1
    assert round(t["macs"] / 1e9, 3) == 1.583
    assert t["aux_params"] == 3_188_840 + 3_190_888
    assert round(t["paper_params_k"], 1) == 6797.7 and t["paper_ops_m"] == 1502
    rows = {r["name"]: r for r in s["rows"]}
    assert rows["conv1"]["output"] == "112x112x64" and rows["5b"]["output"] == "7x7x1024"
    assert rows["3a"]["weights"] == 163_328 and rows["conv2"]["weights"] == 114_688


def test_rows_where_the_paper_differs_are_conv1_4c_5a() -> None:
    differs = summarize(GoogLeNetConfig(variant="paper"))["differs"]
    assert set(differs) == {"conv1", "4c", "5a"}  # docs/googlenet.md 1: the three real mismatches, not rounding
    assert any("ops 118.0M" in d for d in differs["conv1"])
    assert any("params 497.5K" in d for d in differs["4c"])


def test_torchvision_variant_totals() -> None:
    t = summarize(GoogLeNetConfig(variant="torchvision"))["totals"]
    assert t["params"] == 6_624_904 and round(t["macs"] / 1e9, 3) == 1.498  # docs/googlenet.md 5


def test_cli_prints_the_table_and_json(capsys) -> None:
    main(["summary"])
    text = capsys.readouterr().out
    assert "inception (4c)" in text and "6,998,552" in text and "1.583G" in text
    main(["summary", "--variant", "torchvision", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["variant"] == "torchvision" and data["totals"]["params"] == 6_624_904
