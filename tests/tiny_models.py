"""Tiny ONNX models with the service's I/O contract (docs/architecture.md 3.2), built without torch.

uint8 NHWC `image` -> normalise -> 4x4 average grid -> linear -> softmax `probabilities`.
Each seed gives different outputs, and different crops give different outputs, so
averaging over crops and members is observable. `poison=True` makes a batch fail in ONNX
Runtime (a data-dependent Reshape) whenever any pixel value in the batch is 255.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def tiny_model(seed: int, *, poison: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(np.array(MEAN, np.float32) * 255, "mean"),
        numpy_helper.from_array(np.array(STD, np.float32) * 255, "std"),
        numpy_helper.from_array(rng.normal(0, 2.0, (48, 1000)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1000,)).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["xf", "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "std"], ["xn"]),
        helper.make_node("Transpose", ["xn"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["grid"], kernel_shape=[56, 56], strides=[56, 56]),
        helper.make_node("Flatten", ["grid"], ["feat"]),
        helper.make_node("MatMul", ["feat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    if poison:
        inits.append(numpy_helper.from_array(np.array([255], np.int64), "k255"))
        inits.append(numpy_helper.from_array(np.array([-1, 1000], np.int64), "shape"))
        nodes += [
            helper.make_node("Cast", ["image"], ["img64"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["img64"], ["top"], keepdims=0),
            helper.make_node("Div", ["top", "k255"], ["flag"]),  # 1 if the batch holds a 255, else 0
            helper.make_node("Add", ["shape", "flag"], ["bad_shape"]),  # [-1 + f, 1000 + f]
            helper.make_node("Reshape", ["logits", "bad_shape"], ["shaped"]),
        ]
        logits = "shaped"
    else:
        logits = "logits"
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, f"tiny-{seed}",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 224, 224, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1000])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def write_repository(root: Path, members: int = 3, *, poison: bool = False, seed: int = 0) -> Path:
    """A repository of `members` tiny models in the layout of docs/architecture.md 3.1."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"tiny-{i}" for i in range(members)]
    (root / "ensemble.json").write_text(json.dumps({"name": "tiny", "members": names, "primary": names[0]}))
    (root / "labels.tsv").write_text("".join(f"{i}\tn{i:08d}\tclass {i}\n" for i in range(1000)))
    for i, name in enumerate(names):
        data = tiny_model(seed + i, poison=poison).SerializeToString()
        (root / name / "1").mkdir(parents=True, exist_ok=True)
        (root / name / "1" / "model.onnx").write_bytes(data)
        meta = {
            "name": name, "architecture": "tiny", "width_multiplier": 1.0,
            "input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "shape": [-1, 224, 224, 3],
                      "mean": MEAN, "std": STD},
            "output": {"name": "probabilities", "dtype": "float32", "classes": 1000, "softmax": True},
            "files": {"1/model.onnx": {"precision": "fp32", "sha256": hashlib.sha256(data).hexdigest()}},
            "trained": False, "weights": {"source": "random-init", "seed": seed + i}, "opset": 17,
        }
        (root / name / "model.json").write_text(json.dumps(meta))
    return root
