"""service/api/grpc/stats.py: ModelStatistics per repository member, from the service's own metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import metrics
from service.api.grpc.stats import model_statistics
from service.api.v2.catalog import Catalog
from service.repository import ModelEntry, Repository

# Names of their own: the metrics are process-wide and other tests run models too.
NAMES = ("stats-alpha", "stats-beta", "stats-idle")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    members = [
        ModelEntry(name, version, Path(f"{name}/{version}/model.onnx"), "fp32", "0" * 64, {})
        for name, version in zip(NAMES, (1, 4, 2), strict=True)
    ]
    alpha, beta = NAMES[:2]
    metrics.EVALUATED_ROWS.labels(alpha).inc(12)
    metrics.BATCHES.labels(alpha, "ok").inc(3)
    metrics.BATCHES.labels(alpha, "error").inc(1)
    for seconds in (0.5, 0.25):
        metrics.QUEUE_WAIT.labels(alpha).observe(seconds)
    metrics.INFERENCE_DURATION.labels(alpha).observe(0.125)
    metrics.EVALUATED_ROWS.labels(beta).inc(5)
    return Catalog(Repository(Path("repo"), "stats", members, []))


def test_every_member_of_the_asked_models_once_in_ensemble_order(catalog: Catalog) -> None:
    stats = model_statistics(catalog.repository, list(catalog.models.values()))
    assert [(s.name, s.version) for s in stats.model_stats] == [
        ("stats-alpha", "1"), ("stats-beta", "4"), ("stats-idle", "2")
    ]


def test_a_tensor_model_reports_its_member(catalog: Catalog) -> None:
    stats = model_statistics(catalog.repository, [catalog.resolve("stats-beta-tensor")])
    assert [s.name for s in stats.model_stats] == ["stats-beta"]


def test_counts_and_durations_come_from_the_metrics(catalog: Catalog) -> None:
    (alpha,) = model_statistics(catalog.repository, [catalog.resolve("stats-alpha")]).model_stats
    assert (alpha.inference_count, alpha.execution_count) == (12, 3)
    assert (alpha.inference_stats.queue.count, alpha.inference_stats.queue.ns) == (2, 750_000_000)
    compute = alpha.inference_stats.compute_infer
    assert (compute.count, compute.ns) == (1, 125_000_000)
    assert alpha.inference_stats.fail.count == 1


def test_a_member_that_never_ran_reports_zeros(catalog: Catalog) -> None:
    (idle,) = model_statistics(catalog.repository, [catalog.resolve("stats-idle")]).model_stats
    assert (idle.inference_count, idle.execution_count, idle.inference_stats.fail.count) == (0, 0, 0)
    assert (idle.inference_stats.queue.count, idle.inference_stats.compute_infer.ns) == (0, 0)


def test_no_models_no_statistics(catalog: Catalog) -> None:
    assert list(model_statistics(catalog.repository, []).model_stats) == []
