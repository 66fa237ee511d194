"""The app factory: opens the serving object in the lifespan (service/serving.py) and mounts the
API, which reaches it through one dependency (service/api/deps.py). Nothing heavy at import time."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import gpu, logs
from service.api import errors, health, inflight, middleware, security, v1, web
from service.api.grpc import server as grpc_server
from service.api.v2 import routes as v2
from service.api.v2.routes import catalog
from service.serving import Serving, open_serving
from service.settings import Settings

log = logging.getLogger("service")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.configure(settings.log_level, fmt=settings.log_format)  # before the first line of start-up
        serving: Serving = await asyncio.to_thread(open_serving, settings)
        await asyncio.to_thread(gpu.install)  # GPU gauges only where NVML sees a device
        if serving.device is not None:
            held = await asyncio.to_thread(gpu.process_memory_bytes, os.getpid(), settings.device_id)
            log.info("GPU memory held at ready: %s MiB (arena bound %d MiB)",
                     "unknown" if held is None else held >> 20, settings.gpu_memory_limit_mib)
        ensemble = serving.classifier.ensemble
        app.state.serving = serving
        ensemble.start()
        # gRPC listens before readiness turns true, so a port that cannot be had fails the start-up.
        servicer = grpc_server.InferenceServicer(serving, catalog(serving), version=app.version)
        grpc = await grpc_server.start(servicer) if settings.grpc_port else None
        loop = asyncio.get_running_loop()
        grpc_stopped = loop.create_task(_stop_grpc_when_closing(serving, grpc, settings.shutdown_grace_s))
        serving.accepting = True
        try:
            yield
        finally:
            serving.accepting = False
            serving.closing.set()  # a stop without the listener's close (tests, a failed start)
            stop_by = serving.stop_by or loop.time() + settings.shutdown_grace_s
            try:  # gRPC calls and every admitted request finish within what is left of the one grace period
                async with asyncio.timeout_at(stop_by):
                    await grpc_stopped
                    await ensemble.drain()
            except TimeoutError:
                log.warning("requests still queued after %.0f s of grace; failing them", settings.shutdown_grace_s)
            await ensemble.stop()
            serving.close()

    app = FastAPI(
        title="GoogLeNet inference service",
        version="0.1.0",
        summary="GoogLeNet (Szegedy et al. 2014) with the paper's 1/10/144-crop and 7-model ensemble modes.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN: off unless asked for; /openapi.json stays.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    app.state.serving = None  # the one thing app.state holds: set once the models are warm
    errors.install(app)
    app.include_router(health.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(web.router)
    # Inside auth: a request without the token costs no budget; bodies held at once are bounded.
    app.add_middleware(inflight.BodyBudget, limit=settings.max_inflight_body_bytes, max_body=settings.max_body_bytes)
    security.install(app, settings)  # inside the request context: 401s get ids and metrics
    app.add_middleware(middleware.RequestContext)
    return app


async def _stop_grpc_when_closing(serving: Serving, grpc: object | None, grace_s: float) -> None:
    """When the HTTP listener closes, gRPC takes no new calls either; those in flight finish first."""
    await serving.closing.wait()
    if grpc is not None:
        await grpc.stop(max(0.0, (serving.stop_by or 0.0) - asyncio.get_running_loop().time()) or grace_s)


def mark_closing(app: FastAPI) -> None:
    """SIGTERM's second step (service/lifecycle.py): the listener closes; the grace period starts."""
    serving = app.state.serving
    if serving is not None:
        serving.stop_by = asyncio.get_running_loop().time() + serving.settings.shutdown_grace_s
        serving.closing.set()


def mark_draining(app: FastAPI) -> None:
    """SIGTERM's first step (service/lifecycle.py): readiness false; v1, v2 and gRPC all keep serving
    until the listener closes (v2 and gRPC refused during the delay while v1 served, before)."""
    if app.state.serving is not None:
        app.state.serving.draining = True
