"""ONNX Runtime sessions: provider choice, the I/O contract, instances and warm-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from service import runtime
from service.runtime import ModelLoadError, OnnxModel, batch_buckets, choose_provider
from tests.tiny_models import tiny_model


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(tiny_model(1), path)
    return path


def test_auto_picks_cpu_without_a_gpu_and_cuda_without_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: False)
    assert choose_provider("auto") == "cpu"
    assert choose_provider("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="no usable GPU"):
        choose_provider("cuda")


def test_run_from_many_threads_gives_per_row_probabilities(model_file: Path) -> None:
    model = OnnxModel(model_file, provider="cpu", instances=2, max_batch_size=4)
    model.warm_up()
    rows = np.random.default_rng(0).integers(0, 200, (3, 224, 224, 3), dtype=np.uint8)
    out = model.run(rows)
    assert out.shape == (3, 1000) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(model.run(rows[1:2])[0], out[1], atol=1e-6)  # batch composition does not matter


def test_a_model_outside_the_io_contract_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 224, 224])],
    )
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    with pytest.raises(ModelLoadError, match="I/O contract"):
        OnnxModel(path, provider="cpu", instances=1, max_batch_size=1)


def test_an_unreadable_model_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="cannot load m"):
        OnnxModel(path, provider="cpu", instances=1, max_batch_size=1)


def test_cuda_batch_buckets() -> None:
    assert batch_buckets(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert batch_buckets(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert batch_buckets(1) == [1]
