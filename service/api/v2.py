"""KServe v2 / Open Inference Protocol over HTTP, with Triton's binary tensor data, classification
and model configuration extensions, so stock tritonclient and perf_analyzer work (docs/protocol-v2.md).

Inference goes through the same classifier, scheduler and batchers as /v1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import weakref
import zlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.body import read_body
from service.api.deps import Ready
from service.api.v1 import run_for_client
from service.api.v2_catalog import TENSOR_SUFFIX, Catalog, V2Model
from service.api.v2_codec import (
    InferenceRequest,
    RequestedOutput,
    Tensor,
    encode_response,
    parse_request,
    raw_request,
)
from service.crops import CROP_COUNTS
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.contract import INPUT_NAME, OUTPUT_NAME
from service.serving import Serving

router = APIRouter(prefix="/v2", tags=["v2"])
SERVER_NAME = "googlenet-serving"
# "statistics" is left out on purpose: perf_analyzer then skips its /stats calls (serving notes 2.6).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
HEADER_LENGTH = "Inference-Header-Content-Length"


_CATALOGS: weakref.WeakKeyDictionary[Serving, Catalog] = weakref.WeakKeyDictionary()


def catalog(serving: Ready) -> Catalog:
    """The v2 models of the served repository (built once per serving object)."""
    if serving not in _CATALOGS:
        _CATALOGS[serving] = Catalog(serving.repository)
    return _CATALOGS[serving]


Models = Annotated[Catalog, Depends(catalog)]


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def server_ready(models: Models) -> dict[str, bool]:
    return {"ready": True}


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(models: Models, name: str, version: str | None = None) -> dict[str, Any]:
    return models.resolve(name, version).metadata()


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(models: Models, name: str, version: str | None = None) -> dict[str, Any]:
    return {"name": models.resolve(name, version).name, "ready": True}


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_config(
    serving: Ready, models: Models, name: str, version: str | None = None
) -> dict[str, Any]:
    return models.config(
        models.resolve(name, version),
        max_batch_size=serving.settings.max_images_per_request,
        queue_delay_ms=serving.plan.max_queue_delay_ms,
        instances=serving.plan.instances,
        provider=serving.provider,
    )


def _decompressed(body: bytes, encoding: str | None, limit: int) -> bytes:
    """tritonclient's request_compression_algorithm: gzip or deflate (zlib), capped at `limit`."""
    if encoding in (None, "", "identity"):
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise BadRequest(f"the body is not valid {encoding} data") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest(f"the {encoding} body is truncated")
    return out


def _int_parameter(params: dict[str, Any], key: str, default: int | None) -> int | None:
    value = params.get(key, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadRequest(f"parameter {key} must be an integer, got {value!r}")
    return value


def _image(parsed: InferenceRequest, model: V2Model, max_images: int) -> Tensor:
    """The one input, checked against the model: name, datatype, shape, batch size."""
    names = [t.name for t in parsed.inputs]
    if names != [INPUT_NAME]:
        unknown = [n for n in names if n != INPUT_NAME]
        what = f"unknown input {unknown[0]!r}" if unknown else "more than one input"
        raise BadRequest(f"{what}: model {model.name!r} has one input, {INPUT_NAME!r}")
    tensor = parsed.inputs[0]
    if tensor.datatype != model.datatype:
        hint = f"; for uint8 crops use model {model.name}{TENSOR_SUFFIX}" if model.encoded else ""
        raise BadRequest(
            f"input {INPUT_NAME!r} of model {model.name!r} is {model.datatype}, got {tensor.datatype}{hint}"
        )
    shape = tensor.shape
    if not (shape[1:] == model.item_shape or (model.encoded and len(shape) == 1)):
        expected = ", ".join(map(str, model.item_shape))
        raise BadRequest(
            f"input {INPUT_NAME!r} of model {model.name!r} has shape [-1, {expected}], got {list(shape)}"
        )
    if not 1 <= shape[0] <= max_images:
        raise BadRequest(f"the batch dimension must be between 1 and {max_images}, got {shape[0]}")
    return tensor


def _encoded_images(tensor: Tensor) -> list[bytes]:
    if tensor.binary:
        return list(tensor.data.ravel())
    try:  # JSON strings cannot carry raw bytes: encoded images come as base64 text
        return [base64.b64decode(e, validate=True) for e in tensor.data.ravel()]
    except (binascii.Error, ValueError):
        raise BadRequest(f"JSON data of input {INPUT_NAME!r} must be base64 text of encoded images") from None


def _requested(parsed: InferenceRequest) -> list[RequestedOutput]:
    """The outputs to send, each with its final binary flag (checked before any inference runs)."""
    wanted = parsed.outputs if parsed.outputs is not None else [RequestedOutput(OUTPUT_NAME)]
    for out in wanted:
        if out.name != OUTPUT_NAME:
            raise BadRequest(f"unknown output {out.name!r}: the models have one output, {OUTPUT_NAME!r}")
    return [
        RequestedOutput(o.name, o.binary if o.binary is not None else parsed.binary_output, o.classification)
        for o in wanted
    ]


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


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(
    request: Request, serving: Ready, models: Models, name: str, version: str | None = None
) -> Response:
    settings, classifier = serving.settings, serving.classifier
    model = models.resolve(name, version)
    body = _decompressed(
        await read_body(request, settings.max_body_bytes, timeout_s=settings.request_timeout_ms / 1000),
        request.headers.get("content-encoding"),
        settings.max_body_bytes,
    )
    header = request.headers.get(HEADER_LENGTH)
    if header == "0":
        parsed = raw_request(body, INPUT_NAME, model.datatype, model.item_shape)
    else:
        parsed = parse_request(body, header)
    params = parsed.parameters
    crops = _int_parameter(params, "crops", 1)
    if crops not in CROP_COUNTS or (crops != 1 and not model.encoded):
        allowed = ", ".join(map(str, CROP_COUNTS)) if model.encoded else "1 (the client made the crops)"
        raise BadRequest(f"parameter crops of model {model.name!r} must be {allowed}, got {crops}")
    count = _int_parameter(params, "models", None)
    if count is not None and not model.ensemble:
        raise BadRequest(f"parameter models applies to the ensemble, not to member {model.name!r}")
    members = (
        classifier.members(count or len(model.members)) if model.ensemble else list(model.members)
    )
    timeout_us = _int_parameter(params, "timeout", None)  # Triton's per-request timeout, in microseconds
    if timeout_us is not None and timeout_us <= 0:
        raise BadRequest("parameter timeout must be a positive number of microseconds")
    budget_s = min(timeout_us / 1e6 if timeout_us else float("inf"), settings.request_timeout_ms / 1000)
    image = _image(parsed, model, settings.max_images_per_request)
    encoded = _encoded_images(image) if model.encoded else []
    requested = _requested(parsed)
    request.state.mode = f"{crops}x{len(members)}"
    deadline = asyncio.get_running_loop().time() + budget_s

    work = classifier.probabilities(encoded if model.encoded else image.data, crops, members, deadline=deadline)
    probabilities = (await run_for_client(request, work, budget_s)).values.astype(np.float32, copy=False)
    outputs = [_output(out, probabilities, classifier.labels) for out in requested]
    content, header_length = encode_response(model.name, model.version, parsed.id, outputs)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
    )
