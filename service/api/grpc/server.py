"""KServe v2 / Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, Triton's port 8001),
served by grpc.aio on the HTTP server's event loop, through the same classifier, batches, limits,
deadlines, token and metrics as HTTP v2 (docs/protocol-v2.md, "gRPC").

Messages and the service descriptor are tritonclient's generated ones (service.proto). The handlers
are registered from that descriptor rather than with its `add_..._to_server`, only to parse leniently:
there a malformed message would end as UNKNOWN, here it gets INVALID_ARGUMENT like any bad input.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb

from service import logs, metrics
from service.api.call import Call
from service.api.errors import count_rejection
from service.api.grpc import codec as grpc_codec
from service.api.grpc.stats import model_statistics
from service.api.grpc.status import status_code, trailers
from service.api.grpc.stream import INTERNAL_MESSAGE, serve_stream
from service.api.middleware import request_id
from service.api.security import check_token
from service.api.v2 import infer as v2_infer
from service.api.v2.catalog import EXTENSIONS, SERVER_NAME, Catalog, served_config
from service.errors import BadRequest, BodyTimeout, NotFound, NotReady, ServiceError, Unauthorized
from service.serving import Serving
from service.settings import Settings

log = logging.getLogger("service.grpc")
SERVICE = "inference.GRPCInferenceService"
_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
STREAM_INFLIGHT = 32  # requests of one ModelStreamInfer running or answered but not yet sent
T = TypeVar("T")


def _rpc(*, probe: bool = False) -> Callable:
    """Auth, request metrics, access log and error codes around one unary RPC `method(self, request, call)`."""

    def wrap(method: Callable[..., Awaitable]) -> Callable:
        route = f"/{SERVICE}/{method.__name__}"

        @functools.wraps(method)
        async def call(self: InferenceServicer, request: object, context: grpc.aio.ServicerContext) -> object:
            state, status, started = Call.now(), "200", time.perf_counter()  # the clock starts before parsing
            state.client_limit_s = context.time_remaining()  # the client's own gRPC deadline, if it set one
            metrics.INFLIGHT_REQUESTS.inc()
            bound = logs.REQUEST_ID.set(request_id(getattr(request, "id", "")))
            try:
                self.authorize(context, probe=probe)
                if request is grpc_codec.MALFORMED:
                    raise BadRequest(f"the {method.__name__} request is not a valid protobuf message")
                return await method(self, request, state)
            except ServiceError as exc:
                status = str(exc.status)
                count_rejection(exc)
                await context.abort(status_code(exc), exc.message, trailing_metadata=trailers(exc))
            except asyncio.CancelledError:  # the client left or its deadline passed: rows are dropped
                status = "499"
                raise
            except Exception:
                status = "500"
                log.exception("unexpected error")
                await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
            finally:
                self.observe(route, status, state.mode, started)
                logs.REQUEST_ID.reset(bound)
                metrics.INFLIGHT_REQUESTS.dec()

        return call

    return wrap


class InferenceServicer:
    """The KServe v2 gRPC service over the same Serving object (and v2 catalog) as the HTTP API."""

    def __init__(self, serving: Serving, catalog: Catalog, *, version: str) -> None:
        self.serving, self.catalog, self.version = serving, catalog, version
        self.classifier, self.settings = serving.classifier, serving.settings
        self.stream_inflight = STREAM_INFLIGHT
        token = self.settings.api_token
        self._token = token.get_secret_value().encode() if token is not None else None

    def authorize(self, context: grpc.aio.ServicerContext, *, probe: bool) -> None:
        if self._token is None or (probe and not self.settings.auth_probes):
            return
        header = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
        allowed, offered = check_token(header if isinstance(header, str) else "", self._token)
        if not allowed:
            missing = "this call needs the metadata 'authorization: Bearer <token>'"
            raise Unauthorized("the bearer token is not valid" if offered else missing)

    def observe(self, route: str, status: str, mode: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.REQUESTS.labels(route, status, mode).inc()
        metrics.REQUEST_DURATION.labels(route, mode).observe(elapsed)
        log.info("request", extra={"method": "GRPC", "route": route, "status": status, "mode": mode,
                                   "duration_ms": round(elapsed * 1000, 2)})

    def _catalog(self) -> Catalog:
        if not self.serving.serves:
            raise NotReady("the models are still loading", headers={"Retry-After": "1"})
        return self.catalog

    @_rpc(probe=True)
    async def ServerLive(self, request: pb.ServerLiveRequest, call: Call) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.serving.failure is None)  # a restart is the fix

    @_rpc(probe=True)
    async def ServerReady(self, request: pb.ServerReadyRequest, call: Call) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.serving.ready)

    @_rpc()
    async def ModelReady(self, request: pb.ModelReadyRequest, call: Call) -> pb.ModelReadyResponse:
        try:  # Triton answers false for a model it does not serve, rather than an error
            self._catalog().resolve(request.name, request.version)
        except (NotFound, NotReady):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_rpc()
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, call: Call) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=EXTENSIONS)

    @_rpc()
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, call: Call) -> pb.ModelMetadataResponse:
        model = self._catalog().resolve(request.name, request.version)
        return json_format.ParseDict(model.metadata(), pb.ModelMetadataResponse())

    @_rpc()
    async def ModelConfig(self, request: pb.ModelConfigRequest, call: Call) -> pb.ModelConfigResponse:
        catalog = self._catalog()
        config = served_config(catalog, catalog.resolve(request.name, request.version), self.serving)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    @_rpc()
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, call: Call) -> pb.RepositoryIndexResponse:
        state = "READY" if self.serving.ready else "UNAVAILABLE"
        if request.ready and state != "READY":
            return pb.RepositoryIndexResponse()
        models = [{"name": m.name, "version": m.version, "state": state} for m in self.catalog.models.values()]
        return pb.RepositoryIndexResponse(models=models)

    @_rpc()
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, call: Call) -> pb.ModelStatisticsResponse:
        catalog = self._catalog()
        if request.name:
            return model_statistics(catalog.repository, [catalog.resolve(request.name, request.version)])
        return model_statistics(catalog.repository, list(catalog.models.values()))

    @_rpc()
    async def ModelInfer(self, request: pb.ModelInferRequest, call: Call) -> pb.ModelInferResponse:
        return await self.infer(request, call)

    async def infer(self, request: pb.ModelInferRequest, call: Call) -> pb.ModelInferResponse:
        """One inference: the checks of service/api/v2/infer.py, then the classifier, within the request's time."""
        settings, classifier = self.settings, self.classifier
        model = self._catalog().resolve(request.model_name, request.model_version)
        # Off the event loop, as over HTTP: a 20 MiB message's tensors take a while to build.
        parsed = await asyncio.to_thread(grpc_codec.parse_infer, request)
        work = v2_infer.plan(
            parsed, model, classifier=classifier, max_images=settings.max_images_per_request,
            timeout_s=settings.request_timeout_ms / 1000, call=call, partial_margin_s=settings.partial_margin_ms / 1000,
        )
        call.still_in_time()
        values, parameters = await v2_infer.run(work, classifier, self.serving.repository.stopping, call)
        probabilities = values.astype(np.float32, copy=False)
        outputs = v2_infer.outputs(work, probabilities, classifier.labels)
        return grpc_codec.encode_infer(model.name, model.version, parsed.id, outputs, parameters)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[object], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for response in serve_stream(self, requests, context):
            yield response

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        read_s = self.settings.body_read_timeout_ms / 1000
        for method in _DESCRIPTOR.methods:
            fn = getattr(self, method.name, None)
            if fn is None:
                continue  # shared memory, trace, logging, model load: grpc answers UNIMPLEMENTED
            parse = grpc_codec.lenient(getattr(pb, method.input_type.name))
            serialize = getattr(pb, method.output_type.name).SerializeToString
            if method.client_streaming:  # ModelStreamInfer, the one stream of the service
                make = grpc.stream_stream_rpc_method_handler
            else:  # read as a stream of one (the same on the wire), so the message's arrival has a bound
                fn, make = _read_within(fn, read_s), grpc.stream_unary_rpc_method_handler
            handlers[method.name] = make(fn, request_deserializer=parse, response_serializer=serialize)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _read_within(unary: Callable, timeout_s: float) -> Callable:
    """A unary handler fed its one message, or DEADLINE_EXCEEDED when the message does not arrive within
    `timeout_s`: grpc's own unary path waits for it without a bound (8 half-sent 8 MiB messages held 64 MiB)."""

    async def handler(requests: AsyncIterator[object], context: grpc.aio.ServicerContext) -> object:
        try:
            async with asyncio.timeout(timeout_s):
                request = await anext(aiter(requests), None)
        except TimeoutError:
            count_rejection(BodyTimeout("read timeout"))
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the request message did not arrive within {timeout_s:g} s")
        if request is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request message")
        return await unary(request, context)

    return handler


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def options(settings: Settings) -> list[tuple[str, int]]:
    """grpc's own transport limits (docs/reliability.md, "Connections"): messages (their inflated size
    too) at most max_body_bytes, streams per connection, idle and old connections closed, dead peers
    found by keepalive pings, and the handshake bounded like an HTTP request's head."""
    return [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_concurrent_streams", settings.grpc_max_streams),
        ("grpc.max_connection_idle_ms", int(settings.idle_timeout_ms)),
        # A connection lives at most this long; its calls then get request_timeout_ms to finish.
        ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_ms)),
        ("grpc.max_connection_age_grace_ms", int(settings.request_timeout_ms)),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_ms)),
        ("grpc.so_reuseport", 0),  # a port in use is an error at start-up, not a silently shared port
    ]


async def start(servicer: InferenceServicer) -> grpc.aio.Server:
    """Listen on settings.grpc_port (on the running event loop), with the transport limits of `options`."""
    settings = servicer.settings
    server = grpc.aio.server(options=options(settings))
    server.add_generic_rpc_handlers([servicer.handler()])
    server.add_insecure_port(_address(settings.host, settings.grpc_port))
    await server.start()
    log.info("gRPC (KServe v2) on %s", _address(settings.host, settings.grpc_port))
    return server
