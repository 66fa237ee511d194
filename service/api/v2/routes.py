"""KServe v2 / Open Inference Protocol over HTTP, with Triton's binary tensor data, classification
and model configuration extensions, so stock tritonclient and perf_analyzer work (docs/protocol-v2.md).

Inference goes through the same classifier and batching as /v1.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from service.api.body import read_body
from service.api.call import Call
from service.api.deps import Ready
from service.api.health import failed
from service.api.v1 import until_disconnected
from service.api.v2 import infer as v2_infer
from service.api.v2.catalog import EXTENSIONS, SERVER_NAME, Catalog, V2Model, served_config
from service.api.v2.codec import InferenceRequest, encode_response, parse_request, raw_request
from service.contract import INPUT_NAME
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.serving import Serving

router = APIRouter(prefix="/v2", tags=["v2"])
HEADER_LENGTH = "Inference-Header-Content-Length"


_CATALOGS: weakref.WeakKeyDictionary[Serving, Catalog] = weakref.WeakKeyDictionary()


def catalog(serving: Serving) -> Catalog:
    """The v2 models of the served repository (built once per serving object)."""
    if serving not in _CATALOGS:
        _CATALOGS[serving] = Catalog(serving.repository)
    return _CATALOGS[serving]


async def _models(serving: Ready) -> Catalog:  # a coroutine: no thread hop per request (service/api/deps.py)
    return catalog(serving)


Models = Annotated[Catalog, Depends(_models)]


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
async def server_live(request: Request) -> JSONResponse:
    return failed(request) or JSONResponse({"live": True})


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
    return served_config(models, models.resolve(name, version), serving)


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


def _parse(
    body: bytes, encoding: str | None, header: str | None, model: V2Model, limit: int, max_images: int
) -> InferenceRequest:
    body = _decompressed(body, encoding, limit)
    if header == "0":
        return raw_request(body, INPUT_NAME, model.datatype, model.item_shape)
    return parse_request(body, header, check=v2_infer.input_check(model, max_images),
                         max_values=v2_infer.max_values(model, max_images))


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(
    request: Request, serving: Ready, models: Models, name: str, version: str | None = None
) -> Response:
    settings, classifier = serving.settings, serving.classifier
    model = models.resolve(name, version)
    body = await read_body(request, settings.max_body_bytes, timeout_s=settings.request_timeout_ms / 1000,
                           idle_s=settings.body_read_timeout_ms / 1000)
    encoding = request.headers.get("content-encoding")
    inflated = settings.max_body_bytes if encoding not in (None, "", "identity") else 0
    with request.state.body_budget.hold(inflated):  # what the body may inflate to counts as held too
        # Inflating and parsing a 20 MiB body takes seconds of CPU: in a thread, never on the event loop,
        # and each input's shape is checked against the model before its data is built.
        parsed = await asyncio.to_thread(
            _parse, body, encoding, request.headers.get(HEADER_LENGTH), model,
            settings.max_body_bytes, settings.max_images_per_request,
        )
        call: Call = request.state.call
        work = v2_infer.plan(
            parsed, model, classifier=classifier, max_images=settings.max_images_per_request,
            timeout_s=settings.request_timeout_ms / 1000, call=call, partial_margin_s=settings.partial_margin_ms / 1000,
        )
        call.still_in_time()
        values, parameters = await v2_infer.run(work, classifier, serving.repository.stopping, call,
                                                gone=until_disconnected(request))
    probabilities = values.astype(np.float32, copy=False)
    outputs = v2_infer.outputs(work, probabilities, classifier.labels)
    content, header_length = encode_response(model.name, model.version, parsed.id, outputs, parameters)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
    )
