"""ONNX export: the I/O contract, parity with torch on real photos, fp16, and what model.json records."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision

from model_export import export, onnx_graph
from model_export.model import GoogLeNetConfig, build

OUTPUT_KEYS = {
    "name",
    "architecture",
    "width_multiplier",
    "input",
    "output",
    "files",
    "trained",
    "weights",
    "opset",
    "created",
}


def run(data: bytes, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"image": images})[0]


@pytest.fixture(scope="module")
def paper_export():
    model = build(GoogLeNetConfig(variant="paper", aux_logits=False), seed=0).eval()
    exporter = onnx_graph.Exporter()
    return model, exporter, exporter(model)


def test_graph_follows_the_io_contract(paper_export) -> None:
    _, _, proto = paper_export
    (image,), (probs,) = proto.graph.input, proto.graph.output
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim][1:] == [224, 224, 3]
    assert image.type.tensor_type.shape.dim[0].dim_param  # dynamic N
    assert probs.name == "probabilities" and probs.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not any("aux" in i.name for i in proto.graph.initializer)  # aux heads are not exported
    ops = {n.op_type for n in proto.graph.node}
    assert {"Softmax", "Transpose", "Cast"} <= ops and "Pow" not in ops  # LRN's t^0.75 as two Sqrt
    data = onnx_graph.serialize(proto)
    written = onnx.load_from_string(data)  # the exporter's per-node stack traces (local paths) are gone
    assert not any(n.metadata_props or n.doc_string for n in written.graph.node)
    assert "site-packages" not in str(written.metadata_props) + written.graph.doc_string + written.doc_string
    for n in (1, 3):
        out = run(data, np.zeros((n, 224, 224, 3), np.uint8))
        assert out.shape == (n, 1000) and np.allclose(out.sum(1), 1, atol=1e-5)


def test_fp32_matches_torch_on_the_sample_photos(paper_export, sample_images) -> None:
    model, _, proto = paper_export
    expected = export.reference(model, sample_images)
    got = run(onnx_graph.serialize(proto), sample_images)
    diff = float(np.abs(got - expected).max())
    print(f"paper variant fp32 ONNX vs torch on {len(sample_images)} photos: max |dp| {diff:.2e}")
    assert diff <= 1e-5


def test_rebinding_weights_into_the_traced_graph_equals_that_model(paper_export, sample_images) -> None:
    _, exporter, _ = paper_export
    other = build(GoogLeNetConfig(variant="paper", aux_logits=False), seed=5).eval()
    got = run(onnx_graph.serialize(exporter(other)), sample_images[:4])  # no new trace: bound weights
    assert np.abs(got - export.reference(other, sample_images[:4])).max() <= 1e-5
    with pytest.raises(ValueError, match="shape"):
        wrong = dict(other.state_dict(), **{"fc.weight": torch.zeros(1000, 8)})
        onnx_graph.bind(next(iter(exporter._templates.values())), wrong)


@pytest.mark.filterwarnings("ignore::UserWarning")  # onnxscript's BatchNorm fusion notes
def test_torchvision_random_weights_give_torchvisions_probabilities(tmp_path, sample_images) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.googlenet(
        weights=None, aux_logits=True, init_weights=True, transform_input=True
    )
    with torch.no_grad():
        for name, buf in reference.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "googlenet-random.pth")
    model, weights, trained = export.from_torchvision(tmp_path / "googlenet-random.pth")
    assert weights["source"] == "torchvision" and trained
    data = onnx_graph.serialize(onnx_graph.Exporter()(model))
    images = sample_images[:16]
    with torch.no_grad():
        x = (
            torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
            - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        expected = torch.softmax(reference.eval()(x), 1).numpy()
    diff = float(np.abs(run(data, images) - expected).max())
    print(f"torchvision googlenet (random weights) vs our ONNX: max |dp| {diff:.2e}")
    assert diff <= 1e-5


def test_fp16_keeps_the_io_types_and_agrees_on_top1(trained_run, sample_images) -> None:
    # A trained model: with random weights the probabilities are nearly uniform and the top-1 of an
    # image is decided by differences below fp16's resolution, so agreement would measure noise.
    model, _, _ = export.from_checkpoint(trained_run / "checkpoint.pt")
    proto = onnx_graph.Exporter()(model)
    half = onnx_graph.to_fp16(proto)
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    expected = export.reference(model, sample_images)
    result = export.check_parity(onnx_graph.serialize(half), sample_images, expected, "fp16", "photos")
    margin = np.sort(expected, 1)[:, -1] - np.sort(expected, 1)[:, -2]
    print(
        f"fp16 vs torch fp32, trained model, {len(sample_images)} photos: top-1 agreement "
        f"{result['top1_agreement']:.0%}, max |dp| {result['max_abs_diff']:.2e}, median top-1 margin "
        f"{np.median(margin):.3f}"
    )
    assert result["top1_agreement"] >= 0.99


@pytest.fixture(scope="module")
def tiny_exporter() -> onnx_graph.Exporter:
    return onnx_graph.Exporter()  # traces width 0.125 once for the two tests below


def test_write_member_records_files_hashes_and_parity(tmp_path, tiny_exporter) -> None:
    model, weights, trained = export.from_seed("paper", 0.125, 7)
    record = export.write_member(
        tmp_path,
        "googlenet-3",
        model,
        weights=weights,
        trained=trained,
        images=export.parity_images(4),
        exporter=tiny_exporter,
    )
    on_disk = json.loads((tmp_path / "googlenet-3" / "model.json").read_text())
    assert on_disk == record and set(record) == OUTPUT_KEYS
    assert record["trained"] is False and record["weights"] == {
        "source": "random-init",
        "seed": 7,
        "init": "caffe-xavier",
    }
    assert record["input"]["mean"] == [0.485, 0.456, 0.406] and record["output"]["softmax"] is True
    assert set(record["files"]) == {"1/model.onnx", "1/model.fp16.onnx"}
    for relative, info in record["files"].items():
        data = (tmp_path / "googlenet-3" / relative).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)
        assert info["parity"]["passed"] and info["parity"]["max_abs_diff"] <= info["parity"]["tolerance"]
    assert record["files"]["1/model.onnx"]["parity"]["max_abs_diff"] <= 1e-5


def test_a_failed_parity_check_writes_nothing(tmp_path, monkeypatch, tiny_exporter) -> None:
    monkeypatch.setitem(export.TOLERANCE, "fp32", 0.0)
    monkeypatch.setattr(
        export, "reference", lambda model, images: np.full((len(images), 1000), 1e-3, np.float32)
    )
    model, weights, _ = export.from_seed("paper", 0.125, 0)
    with pytest.raises(export.ParityError):
        export.write_member(
            tmp_path,
            "googlenet-0",
            model,
            weights=weights,
            trained=False,
            images=export.parity_images(2),
            exporter=tiny_exporter,
        )
    assert not list(tmp_path.rglob("*.onnx"))


def test_parity_images_fall_back_to_generated_ones(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export, "DEFAULT_IMAGES", tmp_path / "absent")
    images, source = export.parity_images(3)
    assert images.shape == (3, 224, 224, 3) and images.dtype == np.uint8 and "generated" in source
    with pytest.raises(FileNotFoundError):
        export.parity_images(3, tmp_path / "absent")
