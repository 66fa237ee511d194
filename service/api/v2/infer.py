"""One v2 inference request, checked against its model and turned into work for the classifier, and
its answer turned into output tensors: the checks HTTP (v2.py) and gRPC (grpc_server.py) share.

Everything here runs before any inference: a request it refuses costs no model evaluation.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.adaptive import Walk
from service.api import walks
from service.api.call import Call
from service.api.v2.catalog import TENSOR_SUFFIX, V2Model
from service.api.v2.codec import InferenceRequest, InputCheck, RequestedOutput, Tensor
from service.classifier import Classifier
from service.contract import INPUT_NAME, OUTPUT_NAME
from service.crops import CROP_COUNTS
from service.errors import BadRequest
from service.stopping import StoppingRule


@dataclass(frozen=True)
class InferPlan:
    """What to run for one checked request, and what to send back."""

    model: V2Model
    images: list[bytes] | np.ndarray  # encoded images, or uint8 crops [N, 224, 224, 3]
    crops: int
    members: list[str]
    budget_s: float  # the request's time: its `timeout` parameter capped at request_timeout_ms
    deadline: float  # loop time; with partial=true, a little before the request's own (walks.cut)
    auto: bool  # crops or models were "auto": the response says what was chosen
    outputs: list[RequestedOutput]
    adaptive_crops: bool = False  # "adaptive": `crops` / `members` are then where the walk may go
    adaptive_models: bool = False
    partial: bool = False

    @property
    def walks(self) -> bool:
        """A walk up the Table 3 ladder (service/adaptive.py): something adaptive, or partial=true."""
        return self.adaptive_crops or self.adaptive_models or self.partial

    @property
    def mode(self) -> str:
        """The bounded `mode` label of the request metrics."""
        if self.adaptive_crops or self.adaptive_models:
            return walks.ADAPTIVE
        return f"{self.crops}x{len(self.members)}"

    @property
    def parameters(self) -> dict[str, int]:
        """Response parameters: what an auto request was given, as /v1 says it (crops, members)."""
        if not self.auto:
            return {}
        return {"crops": self.crops, "models": len(self.members), "evaluations": self.crops * len(self.members)}


def _int_parameter(params: dict[str, Any], key: str, default: int | None, *, auto: bool = False) -> Any:
    """An integer parameter; with `auto`, the strings "auto" (the service chooses, ladder.py) and
    "adaptive" (each image walks the ladder, adaptive.py) too."""
    value = params.get(key, default)
    if auto and value in (walks.AUTO, walks.ADAPTIVE):
        return value
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        allowed = 'an integer, "auto" or "adaptive"' if auto else "an integer"
        raise BadRequest(f"parameter {key} must be {allowed}, got {value!r}")
    return value


def input_check(model: V2Model, max_images: int) -> InputCheck:
    """The check of one declared input (name, datatype, shape, batch size) against `model`: the
    codec runs it on each input's header before building its data, so a 4 MB body of a million
    elements for a model that takes 16 is refused before a million objects exist."""

    def check(name: str, datatype: str, shape: tuple[int, ...]) -> None:
        if name != INPUT_NAME:
            raise BadRequest(f"unknown input {name!r}: model {model.name!r} has one input, {INPUT_NAME!r}")
        if datatype != model.datatype:
            hint = f"; for uint8 crops use model {model.name}{TENSOR_SUFFIX}" if model.encoded else ""
            raise BadRequest(f"input {INPUT_NAME!r} of model {model.name!r} is {model.datatype}, got {datatype}{hint}")
        if not (shape[1:] == model.item_shape or (model.encoded and len(shape) == 1)):
            expected = ", ".join(map(str, model.item_shape))
            raise BadRequest(
                f"input {INPUT_NAME!r} of model {model.name!r} has shape [-1, {expected}], got {list(shape)}"
            )
        if not 1 <= shape[0] <= max_images:
            raise BadRequest(f"the batch dimension must be between 1 and {max_images}, got {shape[0]}")

    return check


def max_values(model: V2Model, max_images: int) -> int:
    """The most tensor elements a valid request to `model` carries."""
    return max_images * math.prod(model.item_shape)


def _image(parsed: InferenceRequest, model: V2Model, max_images: int) -> Tensor:
    """The one input, checked against the model: name, datatype, shape, batch size."""
    if len(parsed.inputs) != 1:
        raise BadRequest(f"more than one input: model {model.name!r} has one input, {INPUT_NAME!r}")
    tensor = parsed.inputs[0]
    input_check(model, max_images)(tensor.name, tensor.datatype, tensor.shape)
    return tensor


def _encoded_images(tensor: Tensor) -> list[bytes]:
    if tensor.binary:
        return list(tensor.data.ravel())
    try:  # JSON strings cannot carry raw bytes: encoded images come as base64 text
        return [base64.b64decode(e, validate=True) for e in tensor.data.ravel()]
    except (binascii.Error, ValueError):
        raise BadRequest(f"JSON data of input {INPUT_NAME!r} must be base64 text of encoded images") from None


def _requested(parsed: InferenceRequest) -> list[RequestedOutput]:
    """The outputs to send, each with its final binary flag."""
    wanted = parsed.outputs if parsed.outputs is not None else [RequestedOutput(OUTPUT_NAME)]
    for out in wanted:
        if out.name != OUTPUT_NAME:
            raise BadRequest(f"unknown output {out.name!r}: the models have one output, {OUTPUT_NAME!r}")
    return [
        RequestedOutput(o.name, o.binary if o.binary is not None else parsed.binary_output, o.classification)
        for o in wanted
    ]


def plan(
    parsed: InferenceRequest, model: V2Model, *, classifier: Classifier, max_images: int, timeout_s: float,
    call: Call, partial_margin_s: float = 0.0,
) -> InferPlan:
    """Check the request's parameters, input and outputs against `model` (docs/protocol-v2.md,
    "Request parameters"), and settle crops/models "auto" on the Table 3 ladder (service/ladder.py).
    `timeout_s` is the server's bound on any request; `call` gets its deadline and mode label."""
    params = parsed.parameters
    crops = _int_parameter(params, "crops", 1, auto=True)
    choices = (walks.AUTO, walks.ADAPTIVE)
    if (crops not in CROP_COUNTS and crops not in choices) or (crops != 1 and not model.encoded):
        counts = ", ".join(map(str, CROP_COUNTS))
        allowed = f"{counts}, auto or adaptive" if model.encoded else "1 (the client made the crops)"
        raise BadRequest(f"parameter crops of model {model.name!r} must be {allowed}, got {crops}")
    count = _int_parameter(params, "models", None, auto=True)
    if count is not None and not model.ensemble:
        raise BadRequest(f"parameter models applies to the ensemble, not to member {model.name!r}")
    if isinstance(count, int):
        classifier.members(count)  # 400 outside 1..members, before anything is chosen or counted
    partial = params.get("partial", False)
    if not isinstance(partial, bool):
        raise BadRequest(f"parameter partial must be a boolean, got {partial!r}")
    adaptive = walks.check_choices(crops, count)
    timeout_us = _int_parameter(params, "timeout", None)  # Triton's per-request timeout, in microseconds
    if timeout_us is not None and timeout_us <= 0:
        raise BadRequest("parameter timeout must be a positive number of microseconds")
    # A timeout past any server bound is the bound (10**400 us would overflow a float).
    call.limit(timeout_us / 1e6 if timeout_us and timeout_us < 10**15 else None, timeout_s)
    budget_s, start = call.budget_s, call.arrived
    image = _image(parsed, model, max_images)
    images = _encoded_images(image) if model.encoded else image.data
    fixed = None if model.ensemble else list(model.members)
    deadline = start + budget_s
    if partial:
        deadline = walks.cut(deadline, budget_s, partial_margin_s)
    if adaptive:
        members = fixed or classifier.members(len(model.members) if count in (None, walks.ADAPTIVE) else count)
        planned = InferPlan(
            model, images, max(CROP_COUNTS) if crops == walks.ADAPTIVE else crops, members, budget_s, deadline,
            False, _requested(parsed), crops == walks.ADAPTIVE, count == walks.ADAPTIVE, partial,
        )
        call.deadline, call.mode = deadline, planned.mode
        return planned
    auto = crops == "auto" or count == "auto"
    if auto:
        crops, members = classifier.choose(
            len(images), crops=None if crops == "auto" else crops, deadline=start + budget_s, members=fixed,
            models=None if count == "auto" else count or len(model.members),
        )
    else:
        members = fixed or classifier.members(count or len(model.members))
    planned = InferPlan(model, images, crops, members, budget_s, deadline, auto, _requested(parsed), partial=partial)
    call.deadline, call.mode = deadline, planned.mode
    return planned


async def run(
    plan: InferPlan, classifier: Classifier, rule: StoppingRule, call: Call, *, gone: Awaitable[object] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run a checked request within its call's time: (probabilities [N, classes], response parameters)."""
    if plan.walks:
        walking = walk(plan, classifier, rule)
        answer = await walks.answer(walking, call.run(walking.run(), gone=gone))
        return answer.values, walks.parameters(answer)
    result = await call.run(classifier.probabilities(plan.images, plan.crops, plan.members, deadline=plan.deadline),
                            gone=gone)
    return result.values, plan.parameters


def walk(plan: InferPlan, classifier: Classifier, rule: StoppingRule) -> Walk:
    """The walk of an adaptive or partial=true request (`plan.walks`)."""
    return classifier.walk(
        plan.images, crops=None if plan.adaptive_crops else plan.crops,
        models=None if plan.adaptive_models else len(plan.members),
        adaptive=plan.adaptive_crops or plan.adaptive_models, partial=plan.partial, deadline=plan.deadline,
        rule=rule, members=None if plan.model.ensemble else plan.members,
    )


def outputs(plan: InferPlan, probabilities: np.ndarray, labels: list[tuple[str, str]]) -> list[Tensor]:
    return [_output(out, probabilities, labels) for out in plan.outputs]


def _output(out: RequestedOutput, probabilities: np.ndarray, labels: list[tuple[str, str]]) -> Tensor:
    if not out.classification:
        return Tensor(out.name, "FP32", probabilities.shape, probabilities, bool(out.binary))
    # Triton's classification extension: BYTES [N, k] of "probability:index:label", best first.
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, : out.classification]
    data = np.array(
        [
            [f"{row[i]:f}:{i}:{labels[i][1]}".encode() for i in idx]
            for row, idx in zip(probabilities, best, strict=True)
        ],
        dtype=object,
    )
    return Tensor(out.name, "BYTES", data.shape, data, bool(out.binary))
