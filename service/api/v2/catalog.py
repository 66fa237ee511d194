"""The models the v2 protocol exposes, their metadata and Triton-shaped configs (docs/protocol-v2.md).

For a repository `googlenet` with members `googlenet-0`..: `googlenet` (the ensemble) and each
member take encoded images as BYTES; the same names with `-tensor` take uint8 [N, 224, 224, 3]
crops a client made itself. Every model answers FP32 `probabilities` [N, 1000].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.contract import CLASSES, INPUT_NAME, ITEM_SHAPE, OUTPUT_NAME
from service.errors import NotFound
from service.repository import Repository
from service.serving import Serving

SERVER_NAME = "googlenet-serving"
# "statistics" is left out on purpose: perf_analyzer then skips its /stats calls (serving notes 2.6).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
TENSOR_SUFFIX = "-tensor"
ENSEMBLE_VERSION = "1"  # the ensemble is not a file: it has one version, its members have their own
ENCODED_SHAPE, TENSOR_SHAPE = (1,), ITEM_SHAPE  # per batch item, after the batch dimension


@dataclass(frozen=True)
class V2Model:
    name: str
    version: str
    members: tuple[str, ...]  # repository members it averages, ensemble order
    encoded: bool  # True: BYTES input of encoded images; False: uint8 NHWC crops
    ensemble: bool

    @property
    def datatype(self) -> str:
        return "BYTES" if self.encoded else "UINT8"

    @property
    def item_shape(self) -> tuple[int, ...]:
        return ENCODED_SHAPE if self.encoded else TENSOR_SHAPE

    @property
    def platform(self) -> str:
        return "ensemble" if self.ensemble else "onnxruntime_onnx"

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [{"name": INPUT_NAME, "datatype": self.datatype, "shape": [-1, *self.item_shape]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, CLASSES]}],
        }


class Catalog:
    """Name (and optional version) -> V2Model, built once from the served repository."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        members = {m.name: str(m.version) for m in repository.members}
        models = [V2Model(repository.name, ENSEMBLE_VERSION, tuple(members), True, True)]
        models += [V2Model(name, version, (name,), True, False) for name, version in members.items()]
        models += [
            V2Model(m.name + TENSOR_SUFFIX, m.version, m.members, False, m.ensemble) for m in list(models)
        ]
        self.models = {m.name: m for m in models}

    def resolve(self, name: str, version: str | None = None) -> V2Model:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r}; models: {', '.join(self.models)}")
        if version not in (None, "", model.version):
            raise NotFound(f"model {name!r} has no version {version!r}; it serves version {model.version}")
        return model

    def config(
        self, model: V2Model, *, max_batch_size: int, queue_delay_ms: float, instances: int, provider: str
    ) -> dict:
        """The subset of Triton's ModelConfig that perf_analyzer and tritonclient read
        (shared serving notes 2.6: max_batch_size, input, output, scheduler)."""
        config: dict = {
            "name": model.name,
            "platform": model.platform,
            "max_batch_size": max_batch_size,
            "input": [
                {
                    "name": INPUT_NAME,
                    "data_type": "TYPE_STRING" if model.encoded else "TYPE_UINT8",
                    "format": "FORMAT_NONE" if model.encoded else "FORMAT_NHWC",
                    "dims": list(model.item_shape),
                }
            ],
            "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [CLASSES]}],
        }
        if model.ensemble:
            # Every member gets the same input; their probabilities are averaged (paper Table 3).
            suffix = "" if model.encoded else TENSOR_SUFFIX
            config["ensemble_scheduling"] = {
                "step": [
                    {
                        "model_name": m + suffix,
                        "model_version": -1,
                        "input_map": {INPUT_NAME: INPUT_NAME},
                        "output_map": {OUTPUT_NAME: OUTPUT_NAME},
                    }
                    for m in model.members
                ]
            }
        else:
            config["backend"] = "onnxruntime"
            config["version_policy"] = {"specific": {"versions": [int(model.version)]}}
            config["dynamic_batching"] = {"max_queue_delay_microseconds": round(queue_delay_ms * 1000)}
            config["instance_group"] = [
                {"kind": "KIND_GPU" if provider == "cuda" else "KIND_CPU", "count": instances}
            ]
        return config


def served_config(catalog: Catalog, model: V2Model, serving: Serving) -> dict[str, Any]:
    """The Triton-shaped config of `model` as this server runs it: the one answer of HTTP and gRPC."""
    return catalog.config(
        model,
        max_batch_size=serving.settings.max_images_per_request,
        queue_delay_ms=serving.plan.max_queue_delay_ms,
        instances=serving.plan.instances,
        provider=serving.provider,
    )
