"""ONNX Runtime sessions: provider choice, the I/O contract, instances and warm-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from service import runtime
from service.runtime import BatchRun, ModelLoadError, OnnxModel, choose_provider, measure_costs
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


def test_run_gives_per_row_probabilities_and_parts_run_as_one_batch(model_file: Path) -> None:
    model = OnnxModel(model_file, provider="cpu", max_batch_size=4)
    model.warm_up()
    rows = np.random.default_rng(0).integers(0, 200, (3, 224, 224, 3), dtype=np.uint8)
    out = model.run(rows)
    assert out.shape == (3, 1000) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(model.run(rows[1:2])[0], out[1], atol=1e-6)  # batch composition does not matter
    timed = model.run_timed([rows[:1], rows[1:]])
    assert isinstance(timed, BatchRun) and np.allclose(timed.outputs, out, atol=1e-6)
    assert timed.compute_s > 0 and timed.copy_in_s == timed.copy_out_s == 0  # nothing to copy on CPU


def test_a_cuda_model_needs_its_device_and_a_cpu_model_none(model_file: Path) -> None:
    with pytest.raises(ValueError, match="CudaDevice"):
        OnnxModel(model_file, provider="cuda", max_batch_size=4)


def test_costs_split_a_batch_into_fixed_and_per_row_from_best_of_three_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = {1: 3.0, 8: 10.0}  # 2 s fixed + 1 s per row, on a fake clock
    now, calls = [0.0], []

    def run(n: int) -> None:
        calls.append(n)
        now[0] += seconds[n] * (2 if len(calls) % 3 == 1 else 1)  # the first of each three is slow

    monkeypatch.setattr(runtime.time, "perf_counter", lambda: now[0])
    assert measure_costs(run, 8) == pytest.approx((2.0, 1.0))
    assert calls == [1, 1, 1, 8, 8, 8]
    seconds[8] = 30.0  # a noisy fit with a negative fixed part falls back to a pure per-row cost
    assert measure_costs(run, 8) == pytest.approx((0.0, 30.0 / 8))


def test_a_model_outside_the_io_contract_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 224, 224])],
    )
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    with pytest.raises(ModelLoadError, match="I/O contract"):
        OnnxModel(path, provider="cpu", max_batch_size=1)


def test_an_unreadable_model_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="cannot load m"):
        OnnxModel(path, provider="cpu", max_batch_size=1)


