"""service/stopping.py: the margin rule, and adaptive.json as the repository carries it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service import stopping
from service.repository import RepositoryError, load_repository
from service.stopping import DEFAULT_MARGIN, StoppingRule
from tests.tiny_models import write_repository


def test_the_margin_is_the_best_probability_minus_the_second() -> None:
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(stopping.margin(p), [0.3, 0.0])
    rule = StoppingRule({"1x1": 0.25}, default=0.9)
    assert rule.confident(p, "1x1").tolist() == [True, False]
    assert rule.confident(p, "10x7").tolist() == [False, False]  # an unlisted rung: the default


def test_without_a_file_every_rung_uses_the_default(tmp_path: Path) -> None:
    rule = stopping.read(tmp_path)
    assert rule == StoppingRule() and not rule.calibrated and rule.threshold("1x7") == DEFAULT_MARGIN


def test_a_written_document_reads_back(tmp_path: Path) -> None:
    doc = stopping.document({"1x1": 0.4, "10x7": 2.0}, default=0.3, calibration={"images": 3})
    (tmp_path / stopping.FILE).write_text(json.dumps(doc))
    rule = stopping.read(tmp_path)
    assert rule.calibrated and dict(rule.thresholds) == {"1x1": 0.4, "10x7": 2.0} and rule.default == 0.3


@pytest.mark.parametrize(("doc", "message"), [
    ([], "must hold a JSON object"),
    ({"rule": "entropy"}, "rule must be 'margin'"),
    ({"thresholds": [0.5]}, "thresholds must map rung labels"),
    ({"thresholds": {"1x1": -0.1}}, r"thresholds\['1x1'\] must be a margin >= 0"),
    ({"thresholds": {"1x1": True}}, r"thresholds\['1x1'\] must be a margin >= 0"),
    ({"thresholds": {"1x1": "high"}}, r"thresholds\['1x1'\] must be a margin >= 0"),
    ({"default": float("nan")}, "default must be a margin >= 0"),
])
def test_a_malformed_document_says_what_is_wrong(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stopping.parse(doc)


def test_a_malformed_file_stops_the_repository_from_loading(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", members=1)
    (repo / stopping.FILE).write_text("{not json")
    with pytest.raises(RepositoryError, match="adaptive.json is not JSON"):
        load_repository(repo)
    (repo / stopping.FILE).write_text(json.dumps({"thresholds": {"1x1": 0.2}}))
    assert load_repository(repo).stopping.threshold("1x1") == 0.2
