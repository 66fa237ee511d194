"""model_export/onnx_graph.py: the deployed module, weight re-binding, fp16 conversion and serialisation.

Tracing a GoogLeNet takes seconds; test_export.py traces. These tests use small hand-built graphs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from model_export import onnx_graph
from model_export.data import normalize
from model_export.model import GoogLeNetConfig, build


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _scoped(node: onnx.NodeProto, scope: str) -> onnx.NodeProto:
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scope)
    return node


def _linear(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """uint8 [N, 3] -> Cast -> Gemm(model.fc.*) -> Mul by a constant -> Softmax."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Gemm", ["x", "model.fc.weight", "model.fc.bias"], ["logits"], transB=1, name="fc"),
        _scoped(helper.make_node("Mul", ["logits", "scale"], ["scaled"], name="scale"), "['', 'model', 'scale']"),
        helper.make_node("Softmax", ["scaled"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weight, "model.fc.weight"), numpy_helper.from_array(bias, "model.fc.bias"),
         numpy_helper.from_array(np.array(0.01, np.float32), "scale")],
        doc_string="traced",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    model.graph.node[1].doc_string = "File /somewhere/model.py, line 1"
    return model


TEMPLATE = _linear(np.zeros((4, 3), np.float32), np.zeros(4, np.float32))
ROWS = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)


def _expected(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = (ROWS.astype(np.float32) @ weight.T + bias) * 0.01
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def test_the_deployed_module_takes_uint8_nhwc_and_gives_probabilities() -> None:
    config = GoogLeNetConfig(variant="torchvision", width=0.125, num_classes=5, aux_logits=False)
    model = build(config, seed=0)
    deployed = onnx_graph.Deployed(model).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        got = deployed(image)
        expected = torch.softmax(model.eval()(normalize(image.permute(0, 3, 1, 2))), dim=1)
    assert got.shape == (2, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(got, expected)


def test_bind_writes_each_parameter_into_its_initializer() -> None:
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    state = {
        "fc.weight": torch.from_numpy(weight), "fc.bias": torch.from_numpy(bias).double(),
        "aux1.fc.weight": torch.ones(9),  # training-only heads are not in the deployed graph
    }
    bound = onnx_graph.bind(TEMPLATE, state)
    inits = {i.name: numpy_helper.to_array(i) for i in bound.graph.initializer}
    np.testing.assert_array_equal(inits["model.fc.weight"], weight)
    assert inits["model.fc.bias"].dtype == np.float32 and inits["scale"] == np.float32(0.01)
    got = _session(bound).run(None, {"image": ROWS})[0]
    np.testing.assert_allclose(got, _expected(weight, bias), rtol=1e-5)
    assert not numpy_helper.to_array(TEMPLATE.graph.initializer[0]).any()  # the template is left as it was


def test_bind_refuses_a_parameter_of_another_shape() -> None:
    state = {"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"model.fc.weight has shape \(4, 3\), the model's is \(3, 4\)"):
        onnx_graph.bind(TEMPLATE, state)


def test_bind_refuses_a_parameter_the_graph_lacks() -> None:
    state = {"fc.weight": torch.zeros(4, 3), "fc.bias": torch.zeros(4), "head.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"no initializer for \['head.weight'\]: cannot re-bind"):
        onnx_graph.bind(TEMPLATE, state)


def test_fp16_halves_the_weights_but_keeps_the_io_and_the_softmax_in_float32() -> None:
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(4, 3)).astype(np.float32) / 100, rng.normal(size=4).astype(np.float32)
    state = {"fc.weight": torch.from_numpy(weight), "fc.bias": torch.from_numpy(bias)}
    proto = onnx_graph.bind(TEMPLATE, state)
    half = onnx_graph.to_fp16(proto)
    onnx.checker.check_model(half, full_check=True)  # also: nodes in topological order
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inits = {i.name: i.data_type for i in half.graph.initializer}
    assert inits["model.fc.weight"] == TensorProto.FLOAT16
    inferred = onnx.shape_inference.infer_shapes(half)
    values = [*inferred.graph.value_info, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    by_name = {n.name: n for n in half.graph.node}
    assert types[by_name["fc"].output[0]] == TensorProto.FLOAT16
    assert types[by_name["softmax"].input[0]] == TensorProto.FLOAT
    outputs = [o for n in half.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs))  # each value made once
    got = _session(half).run(None, {"image": ROWS})[0]
    np.testing.assert_allclose(got, _expected(weight, bias), atol=2e-3)
    assert proto.graph.initializer[0].data_type == TensorProto.FLOAT  # the fp32 graph is left as it was


def _traced_lrn(channels: int = 8) -> onnx.ModelProto:
    """float [N, C, 5, 5] -> Relu -> the nodes torch's exporter writes for model.lrn1 (LocalResponseNorm.forward)."""
    scope = "['', 'model', 'model.lrn1', '{}']"
    ops = [
        ("Mul", ["xr", "xr"], ["sq"]), ("Unsqueeze", ["sq", "axis1"], ["u"]), ("Pad", ["u", "pads"], ["p"]),
        ("AveragePool", ["p"], ["a"]), ("Squeeze", ["a", "axis1"], ["m"]), ("Mul", ["m", "alpha"], ["am"]),
        ("Add", ["am", "k"], ["t"]), ("Sqrt", ["t"], ["r"]), ("Sqrt", ["r"], ["rr"]), ("Mul", ["r", "rr"], ["d"]),
        ("Div", ["xr", "d"], ["y"]),
    ]
    nodes = [helper.make_node("Relu", ["x"], ["xr"], name="before")]
    for i, (op, inputs, outputs) in enumerate(ops):
        extra = {"kernel_shape": [5, 1, 1], "strides": [1, 1, 1]} if op == "AveragePool" else {}
        nodes.append(_scoped(helper.make_node(op, inputs, outputs, name=f"n{i}", **extra), scope.format(f"n{i}")))
    nodes.append(helper.make_node("Relu", ["y"], ["out"], name="after"))
    pads = np.array([0, 0, 2, 0, 0, 0, 0, 2, 0, 0], np.int64)  # the channel axis, as depth: 2 before, 2 after
    graph = helper.make_graph(
        nodes, "lrn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", channels, 5, 5])],
        [numpy_helper.from_array(np.array([1], np.int64), "axis1"), numpy_helper.from_array(pads, "pads"),
         numpy_helper.from_array(np.array(1e-4, np.float32), "alpha"),
         numpy_helper.from_array(np.array(1.0, np.float32), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_the_traced_lrn_becomes_onnx_lrn_with_the_same_answers() -> None:
    traced = _traced_lrn()
    native = onnx_graph.native_lrn(onnx.ModelProto.FromString(traced.SerializeToString()))
    assert [n.op_type for n in native.graph.node] == ["Relu", "LRN", "Relu"]
    (lrn,) = [n for n in native.graph.node if n.op_type == "LRN"]
    attributes = {a.name: helper.get_attribute_value(a) for a in lrn.attribute}
    assert attributes == pytest.approx({"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0})
    assert not native.graph.initializer  # the traced nodes' constants went with them
    x = (np.random.default_rng(0).normal(size=(2, 8, 5, 5)) * 30).astype(np.float32)  # negatives too
    expected = _session(traced).run(None, {"x": x})[0]
    np.testing.assert_allclose(_session(native).run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-6)


def test_fp16_keeps_the_native_lrn_in_float32() -> None:
    half = onnx_graph.to_fp16(_traced_lrn())
    inferred = onnx.shape_inference.infer_shapes(half)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    (lrn,) = [n for n in half.graph.node if n.op_type == "LRN"]
    assert types[lrn.input[0]] == types[lrn.output[0]] == TensorProto.FLOAT  # x^2 would overflow fp16 past 256
    x = (np.random.default_rng(1).normal(size=(2, 8, 5, 5)) * 30).astype(np.float32)
    np.testing.assert_allclose(_session(half).run(None, {"x": x})[0], _session(_traced_lrn()).run(None, {"x": x})[0],
                               rtol=2e-3, atol=2e-3)


def test_a_graph_whose_inputs_are_never_made_cannot_be_ordered() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"], name="orphan")], "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ValueError, match="graph has a cycle or a missing input near orphan"):
        onnx_graph._sort_nodes(graph)


def test_serialize_drops_the_exporters_metadata_and_checks_the_model() -> None:
    data = onnx_graph.serialize(TEMPLATE)
    loaded = onnx.load_from_string(data)
    assert all(not n.metadata_props and not n.doc_string for n in loaded.graph.node)
    assert b"/somewhere/" not in data and b"name_scopes" not in data
    assert TEMPLATE.graph.node[2].metadata_props  # the input proto is left as it was
    got = _session(loaded).run(None, {"image": ROWS})[0]
    np.testing.assert_allclose(got, np.full((2, 4), 0.25), rtol=1e-6)


def test_serialize_refuses_an_invalid_model() -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(TEMPLATE)
    broken.graph.node[1].input[1] = "missing"
    with pytest.raises(onnx.checker.ValidationError):
        onnx_graph.serialize(broken)
