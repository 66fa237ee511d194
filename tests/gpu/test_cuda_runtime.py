"""The CUDA runtime (service/cuda.py) in this process: graphs on and off answer the same, padding a
batch to its bucket never reaches a row's answer, and a failed capture leaves its bucket to plain
runs, counted, instead of failing the start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import cuda, metrics
from service.cuda import CudaConfig, CudaDevice
from service.repository import load_repository
from service.runtime import OnnxModel

pytestmark = pytest.mark.gpu
FP16 = 2e-3  # the largest |p - p'| allowed between two fp16 runs of the same row


def open_model(repository: Path, *, graphs: bool, max_batch_size: int = 8) -> OnnxModel:
    entry = load_repository(repository, precision="fp16").members[0]
    device = CudaDevice(CudaConfig(lanes=2, graphs=graphs), max_batch_size=max_batch_size)
    model = OnnxModel(entry.path, provider="cuda", max_batch_size=max_batch_size, device=device)
    model.warm_up()
    return model


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 224, 224, 3), dtype=np.uint8)


def test_graphs_on_and_off_answer_the_same_in_every_bucket(gpu_repository: Path) -> None:
    with_graphs, without = open_model(gpu_repository, graphs=True), open_model(gpu_repository, graphs=False)
    assert with_graphs.cuda is not None and with_graphs.cuda.graph_buckets() == 2 * 4  # 2 lanes x (1, 2, 4, 8)
    for n in (1, 2, 3, 5, 8):
        batch = rows(n, seed=n)
        assert np.abs(with_graphs.run(batch) - without.run(batch)).max() <= FP16, n


def test_padding_to_a_bucket_never_reaches_a_rows_answer(gpu_repository: Path) -> None:
    model = open_model(gpu_repository, graphs=True)
    mine = rows(3, seed=1)
    alone = np.concatenate([model.run(mine[i : i + 1]) for i in range(3)])  # bucket 1, no padding
    model.run(rows(8, seed=2))  # the 8-row bucket's buffer now holds other rows
    padded = model.run(mine)  # 3 rows in the 4-row bucket: one row of padding
    among = model.run(np.concatenate([mine, rows(2, seed=3)]))[:3]  # 5 rows in the 8-row bucket
    assert np.abs(padded - alone).max() <= FP16 and np.abs(among - alone).max() <= FP16


def test_a_capture_that_fails_leaves_its_bucket_to_plain_runs(
    gpu_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cuda._run_options

    def broken(graph_id: str):  # every capture asks for a graph id ONNX Runtime cannot parse
        return real(graph_id if graph_id == cuda.NO_GRAPH else "not-a-number")

    monkeypatch.setattr(cuda, "_run_options", broken)
    failures = metrics.CUDA_GRAPH_FALLBACKS.labels("googlenet-0")._value.get()
    model = open_model(gpu_repository, graphs=True, max_batch_size=4)  # starts anyway
    assert model.cuda is not None and model.cuda.graph_buckets() == 0
    assert metrics.CUDA_GRAPH_FALLBACKS.labels("googlenet-0")._value.get() - failures == 2 * 3  # lanes x buckets
    reference = open_model(gpu_repository, graphs=False, max_batch_size=4)
    batch = rows(3)
    assert np.abs(model.run(batch) - reference.run(batch)).max() <= FP16
