"""ONNX graphs of the deployed model: tracing, re-binding weights into a traced graph, fp16 conversion.

The graph takes uint8 NHWC RGB and returns softmax probabilities (docs/architecture.md 3.2); normalisation,
the NHWC->NCHW transpose and the softmax are inside it, so the service feeds raw crops.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.transformers import float16
from torch import Tensor, nn

from model_export.data import normalize
from model_export.model import GoogLeNet
from service.contract import INPUT_NAME, ITEM_SHAPE, OUTPUT_NAME

OPSET = 18  # torch's dynamo exporter starts at 18 (docs/googlenet.md 6)
INPUT, OUTPUT = INPUT_NAME, OUTPUT_NAME  # the contract the service checks (service/contract.py)


class Deployed(nn.Module):
    """uint8 N x 224 x 224 x 3 RGB -> float32 N x classes probabilities: what the service runs."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        x = normalize(image.permute(0, 3, 1, 2))  # N x 3 x 224 x 224, (x / 255 - mean) / std
        return torch.softmax(self.model(x), dim=1)  # N x 1000


def trace(model: GoogLeNet) -> onnx.ModelProto:
    """torch.onnx (dynamo) export of the eval-mode model, aux heads off, dynamic batch."""
    deployed = Deployed(model).eval()
    example = torch.zeros(2, *ITEM_SHAPE, dtype=torch.uint8)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress steps
        program = torch.onnx.export(
            deployed,
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
            verbose=False,
        )
    return program.model_proto


class Exporter:
    """Exports models, tracing each paper-variant architecture once.

    Tracing costs seconds per model, so the paper variant's graph is traced with placeholder weights
    and each model's own weights are then written into its initializers (`bind`); the parity check
    that follows every export runs the bound graph against that model in torch. The torchvision
    variant is traced per model: its exporter folds BatchNorm into the convs, so the initializers are
    no longer the model's parameters.
    """

    def __init__(self) -> None:
        self._templates: dict[object, onnx.ModelProto] = {}

    def __call__(self, model: GoogLeNet) -> onnx.ModelProto:
        model = model.eval()
        if model.config.variant != "paper":
            return trace(model)
        key = model.config
        if key not in self._templates:
            self._templates[key] = trace(_placeholder(model))
        return bind(self._templates[key], model.state_dict())


def _placeholder(model: GoogLeNet) -> GoogLeNet:
    # Distinct values everywhere: the exporter's optimizer merges equal constants, and the Caffe init
    # gives every bias the same 0.2, which would leave some parameters without their own initializer.
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return twin


def bind(template: onnx.ModelProto, state: dict[str, Tensor]) -> onnx.ModelProto:
    """A copy of `template` whose initializer `model.<key>` holds `state[key]`, for every parameter."""
    proto = onnx.ModelProto()
    proto.CopyFrom(template)
    wanted = {k for k in state if not k.startswith("aux")}
    for init in proto.graph.initializer:
        key = init.name.removeprefix("model.")
        if key not in wanted:
            continue
        value = state[key].detach().cpu().numpy()
        if tuple(init.dims) != value.shape:
            raise ValueError(
                f"initializer {init.name} has shape {tuple(init.dims)}, the model's is {value.shape}"
            )
        init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), init.name))
        wanted.discard(key)
    if wanted:
        raise ValueError(f"the traced graph has no initializer for {sorted(wanted)[:5]}: cannot re-bind")
    return proto


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """float16 weights and activations for the GPU; the uint8 input and float32 output keep their
    types (docs/model-repository.md), and each LRN becomes ONNX's own LRN operator.

    LRN stays float32: it squares activations, and x^2 overflows float16 once |x| > 256. The softmax
    stays float32 so the probabilities sum to 1 at float32 precision.
    """
    native = native_lrn(copy.deepcopy(proto))
    lrn = [n.name for n in native.graph.node if n.op_type == "LRN"]
    half = float16.convert_float_to_float16(native, keep_io_types=True, op_block_list=["Softmax"], node_block_list=lrn)
    _sort_nodes(half.graph)
    return half


def native_lrn(proto: onnx.ModelProto, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
               k: float = 1.0) -> onnx.ModelProto:
    """Each traced LRN (the eleven float32 nodes of `LocalResponseNorm.forward`, in scope
    model.lrn1 / model.lrn2) as one ONNX LRN node: x / (k + alpha / size * window sum of x^2)^beta,
    Caffe's definition exactly (max |diff| 1e-9 on CPU). On CUDA it is one cuDNN kernel instead of
    eleven passes over 56 x 56 x 192 float32 tensors, several of them held at once; on CPU ONNX
    Runtime's LRN is slower than the traced nodes (50 ms against 32 ms per image), so the float32
    file keeps them."""
    graph = proto.graph
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        scope = next((s for s in _scopes(node) if s.rsplit(".", 1)[-1].startswith("lrn")), None)
        if scope is not None:
            groups.setdefault(scope, []).append(node)
    constants = {i.name for i in graph.initializer}
    for scope, nodes in groups.items():
        produced = {o for n in nodes for o in n.output}
        outside = {i for n in graph.node if n not in nodes for i in n.input} | {o.name for o in graph.output}
        inputs = {i for n in nodes for i in n.input if i not in produced and i not in constants}
        outputs = [o for n in nodes for o in n.output if o in outside]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{scope} is not one LRN: inputs {sorted(inputs)}, outputs {outputs}")
        at = min(list(graph.node).index(n) for n in nodes)
        for n in nodes:
            graph.node.remove(n)
        graph.node.insert(at, onnx.helper.make_node(
            "LRN", [inputs.pop()], outputs, name=f"{scope}.native", size=size, alpha=alpha, beta=beta, bias=k
        ))
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return proto


def _scope(node: onnx.NodeProto) -> str:
    return next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")


def _scopes(node: onnx.NodeProto) -> list[str]:
    """The module names a traced node sits in, outermost first ("['', 'model', 'model.lrn1', 'pad']")."""
    text = _scope(node)
    return [s.strip().strip("'\"") for s in text.strip("[]").split(",")] if text else []


def _sort_nodes(graph: onnx.GraphProto) -> None:
    # The converter appends the Casts it adds around float32 islands, and adds the same Cast once per
    # consumer: drop the repeats and restore the topological order ONNX requires.
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(o in known for o in node.output):
                continue  # a repeat of a node already placed
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near {waiting[0].name}")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def serialize(proto: onnx.ModelProto) -> bytes:
    """Checked model bytes, without the exporter's per-node metadata (source stack traces, local paths)."""
    clean = onnx.ModelProto()
    clean.CopyFrom(proto)
    for node in clean.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.checker.check_model(clean)
    return clean.SerializeToString()
