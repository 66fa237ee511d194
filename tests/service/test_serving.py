"""service/serving.py: the batching plan per provider and the serving object open_serving wires."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.serving import Plan, Serving, open_serving
from service.settings import Settings
from tests.conftest import onnx_probabilities
from tests.tiny_models import write_repository


def _settings(repo: Path = Path("unused"), **overrides: object) -> Settings:
    return Settings(model_repository=repo, providers="cpu", **overrides)


def test_cpu_defaults_keep_batches_small_and_one_slot_more_than_cores() -> None:
    settings = _settings()
    plan = Plan.resolve(settings, "cpu")
    assert (plan.provider, plan.precision, plan.max_batch_size) == ("cpu", "fp32", 2)
    assert plan.instances == settings.cpu_count + 1
    # Admission is by estimated wait; the row bound is only a memory cap.
    assert (plan.max_queue_wait_ms, plan.max_queue_rows) == (8000.0, 4096)
    assert plan.max_queue_delay_ms == 0.0  # a free core runs the row it has


def test_cuda_defaults_batch_large_in_fp16() -> None:
    plan = Plan.resolve(_settings(), "cuda")
    assert (plan.provider, plan.precision, plan.max_batch_size) == ("cuda", "fp16", 128)
    assert (plan.max_queue_rows, plan.max_queue_wait_ms, plan.instances) == (4096, 1000.0, 2)
    assert plan.max_queue_delay_ms == 0.0  # a free lane runs what is queued; busy lanes let batches form


def test_explicit_settings_win_over_the_provider_defaults() -> None:
    settings = _settings(
        precision="fp32", max_batch_size=16, max_queue_rows=64, instances=3, max_queue_delay_ms=7.5
    )
    plan = Plan.resolve(settings, "cuda")
    assert (plan.precision, plan.max_batch_size, plan.max_queue_rows, plan.instances) == ("fp32", 16, 64, 3)
    assert plan.max_queue_delay_ms == 7.5


def test_the_default_queue_holds_at_least_one_batch() -> None:
    settings = _settings(max_batch_size=4096)
    assert Plan.resolve(settings, "cpu").max_queue_rows == max(4096, 32 * settings.cpu_count)


def test_plan_is_immutable() -> None:
    plan = Plan.resolve(_settings(), "cpu")
    with pytest.raises(AttributeError):
        plan.max_batch_size = 9  # type: ignore[misc]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_repository(tmp_path_factory.mktemp("serving") / "repo", members=3, seed=40)
    ensemble = json.loads((root / "ensemble.json").read_text())
    (root / "ensemble.json").write_text(json.dumps({**ensemble, "name": "trio", "primary": "tiny-1"}))
    meta = json.loads((root / "tiny-1" / "model.json").read_text())
    (root / "tiny-1" / "model.json").write_text(json.dumps({**meta, "trained": True}))
    return root


def test_open_serving_wires_every_member_in_ensemble_order(repo: Path) -> None:
    serving = open_serving(_settings(repo, max_batch_size=4, max_queue_rows=12, instances=1))
    try:
        assert serving.ready is False  # the lifespan turns it on once the batchers run
        assert serving.provider == serving.plan.provider == "cpu"
        names = [m.name for m in serving.repository.members]
        assert names == ["tiny-1", "tiny-0", "tiny-2"] == serving.classifier.names
        for batcher in serving.classifier.ensemble.queues.values():
            assert (batcher.max_batch_size, batcher.max_queue_rows) == (4, 12)
            assert batcher.max_delay_s == pytest.approx(serving.plan.max_queue_delay_ms / 1000)
        assert serving.classifier.labels[7] == ("n00000007", "class 7")
        for entry in serving.repository.members:
            labels = {"model": entry.name, "version": "1", "sha256": entry.sha256, "provider": "cpu",
                      "precision": "fp32"}
            assert REGISTRY.get_sample_value("googlenet_model_info", labels) == 1
    finally:
        serving.classifier.close()


def test_open_serving_loads_only_the_first_members(repo: Path) -> None:
    serving = open_serving(_settings(repo, models=2, instances=1))
    try:
        assert serving.classifier.names == ["tiny-1", "tiny-0"]
    finally:
        serving.classifier.close()


def test_the_opened_serving_answers_what_onnx_runtime_says(repo: Path) -> None:
    serving = open_serving(_settings(repo, instances=1))
    rows = np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)

    async def run() -> np.ndarray:
        scheduler = serving.classifier.ensemble
        scheduler.start()
        try:
            probs = await serving.classifier.probabilities(rows, 1, ["tiny-1", "tiny-2"], deadline=None)
            return probs.values
        finally:
            await scheduler.stop()
            serving.classifier.close()

    expected = onnx_probabilities(repo, ["tiny-1", "tiny-2"], rows)
    np.testing.assert_allclose(asyncio.run(run()), expected, rtol=1e-5, atol=1e-7)


def test_trained_holds_only_when_every_member_is(repo: Path) -> None:
    serving = open_serving(_settings(repo, instances=1))
    try:
        assert serving.trained(["tiny-1"]) is True
        assert serving.trained(["tiny-0"]) is False
        assert serving.trained(["tiny-1", "tiny-0"]) is False
    finally:
        serving.classifier.close()


def test_servings_compare_by_identity(repo: Path) -> None:
    # The api caches views per serving object (weak keys): equal fields must not collide.
    first = open_serving(_settings(repo, models=1, instances=1))
    second = Serving(first.settings, first.repository, first.plan, first.classifier)
    try:
        assert first != second and hash(first) != hash(second)
    finally:
        first.classifier.close()
