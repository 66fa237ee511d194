"""service/api/v2/catalog.py: the v2 models of a repository, their metadata and Triton-shaped configs."""

from __future__ import annotations

import json

import pytest

from service.api.v2.catalog import ENSEMBLE_VERSION, Catalog, V2Model
from service.errors import NotFound
from service.repository import load_repository
from tests.tiny_models import write_repository


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = write_repository(tmp_path_factory.mktemp("catalog") / "repo", members=2)
    # A member at version 3: the ensemble keeps its own version, the member's is its folder's.
    meta = json.loads((root / "tiny-1" / "model.json").read_text())
    meta["files"] = {"3/model.onnx": meta["files"]["1/model.onnx"]}
    (root / "tiny-1" / "model.json").write_text(json.dumps(meta))
    (root / "tiny-1" / "1").rename(root / "tiny-1" / "3")
    return Catalog(load_repository(root))


def _config(catalog: Catalog, name: str, **overrides: object) -> dict:
    options = {"max_batch_size": 16, "queue_delay_ms": 2.0, "instances": 3, "provider": "cpu", **overrides}
    return catalog.config(catalog.resolve(name), **options)  # type: ignore[arg-type]


def test_every_model_and_its_tensor_twin_is_listed(catalog: Catalog) -> None:
    assert list(catalog.models) == [
        "tiny", "tiny-0", "tiny-1", "tiny-tensor", "tiny-0-tensor", "tiny-1-tensor"
    ]


def test_models_carry_their_members_and_versions(catalog: Catalog) -> None:
    assert catalog.resolve("tiny") == V2Model("tiny", ENSEMBLE_VERSION, ("tiny-0", "tiny-1"), True, True)
    assert catalog.resolve("tiny-1") == V2Model("tiny-1", "3", ("tiny-1",), True, False)
    assert catalog.resolve("tiny-tensor") == V2Model("tiny-tensor", "1", ("tiny-0", "tiny-1"), False, True)
    assert catalog.resolve("tiny-1-tensor") == V2Model("tiny-1-tensor", "3", ("tiny-1",), False, False)


@pytest.mark.parametrize("version", [None, "", "3"])
def test_resolve_accepts_no_version_or_the_served_one(catalog: Catalog, version: str | None) -> None:
    assert catalog.resolve("tiny-1", version).name == "tiny-1"


def test_an_unknown_model_is_not_found_and_the_models_are_named(catalog: Catalog) -> None:
    with pytest.raises(NotFound) as caught:
        catalog.resolve("resnet")
    assert caught.value.message == (
        "unknown model 'resnet'; models: tiny, tiny-0, tiny-1, tiny-tensor, tiny-0-tensor, tiny-1-tensor"
    )


def test_another_version_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="model 'tiny-1' has no version '1'; it serves version 3"):
        catalog.resolve("tiny-1", "1")
    with pytest.raises(NotFound, match="it serves version 1"):
        catalog.resolve("tiny", "3")


def test_encoded_models_take_bytes_and_tensor_models_uint8_crops(catalog: Catalog) -> None:
    encoded, tensor = catalog.resolve("tiny").metadata(), catalog.resolve("tiny-1-tensor").metadata()
    assert encoded == {
        "name": "tiny", "versions": ["1"], "platform": "ensemble",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}],
    }
    assert tensor["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}]
    assert (tensor["platform"], tensor["versions"]) == ("onnxruntime_onnx", ["3"])


def test_an_ensemble_config_steps_through_its_members(catalog: Catalog) -> None:
    config = _config(catalog, "tiny")
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["tiny-0", "tiny-1"]
    assert all(s["input_map"] == {"image": "image"} and s["output_map"] == {"probabilities": "probabilities"}
               for s in steps)
    assert "dynamic_batching" not in config and "instance_group" not in config
    assert config["input"] == [
        {"name": "image", "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1]}
    ]


def test_a_tensor_ensemble_steps_through_the_tensor_members(catalog: Catalog) -> None:
    config = _config(catalog, "tiny-tensor")
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["tiny-0-tensor", "tiny-1-tensor"]
    assert config["input"] == [
        {"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": [224, 224, 3]}
    ]


def test_a_member_config_has_batching_instances_and_its_version(catalog: Catalog) -> None:
    config = _config(catalog, "tiny-1", queue_delay_ms=2.5, instances=3)
    assert config["max_batch_size"] == 16 and config["backend"] == "onnxruntime"
    assert config["version_policy"] == {"specific": {"versions": [3]}}
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 2500}
    assert config["instance_group"] == [{"kind": "KIND_CPU", "count": 3}]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1000]}]
    assert "ensemble_scheduling" not in config


def test_a_member_on_cuda_is_a_gpu_instance_group(catalog: Catalog) -> None:
    assert _config(catalog, "tiny-0", provider="cuda", instances=2)["instance_group"] == [
        {"kind": "KIND_GPU", "count": 2}
    ]


def test_the_queue_delay_is_rounded_to_microseconds(catalog: Catalog) -> None:
    def delay_us(ms: float) -> int:
        batching = _config(catalog, "tiny-0", queue_delay_ms=ms)["dynamic_batching"]
        return batching["max_queue_delay_microseconds"]

    assert (delay_us(0.0004), delay_us(1.2346), delay_us(0.0)) == (0, 1235, 0)
