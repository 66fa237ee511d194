"""A model with the service's I/O contract that costs a fixed, known amount of CPU per row, so a
test can measure capacity in seconds and then offer a multiple of it (docs/reliability.md, "Overload")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.tiny_models import write_repository

WIDTH = 1024


def slow_model(layers: int) -> bytes:
    """image uint8 [N,224,224,3] -> 4x4 grid means -> `layers` x (1024x1024 MatMul + Tanh) -> softmax [N,1000]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.normal(0, 0.02, (48, WIDTH))).astype(np.float32), "w_in"),
        numpy_helper.from_array((rng.normal(0, 1 / 32, (WIDTH, WIDTH))).astype(np.float32), "w"),
        numpy_helper.from_array((rng.normal(0, 0.1, (WIDTH, 1000))).astype(np.float32), "w_out"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["grid"], kernel_shape=[56, 56], strides=[56, 56]),
        helper.make_node("Flatten", ["grid"], ["feat"]),
        helper.make_node("MatMul", ["feat", "w_in"], ["h0"]),
    ]
    for i in range(layers):  # one shared weight: the file stays small, the work does not
        nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    nodes += [
        helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 224, 224, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1000])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def write_slow_repository(root: Path, *, layers: int = 40) -> Path:
    """A one-member repository (the tiny layout) whose model is `slow_model(layers)`."""
    write_repository(root, members=1)
    (root / "tiny-0" / "1" / "model.onnx").write_bytes(slow_model(layers))
    meta = json.loads((root / "tiny-0" / "model.json").read_text())
    meta.pop("files")  # no checksum for the swapped file
    (root / "tiny-0" / "model.json").write_text(json.dumps(meta))
    return root
