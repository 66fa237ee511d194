"""The app factory: loads the repository and sessions in the lifespan, wires runtime -> batchers ->
scheduler -> classifier, and mounts the API. Nothing heavy happens at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from service import gpu, logs, metrics
from service.api import errors, grpc_server, health, middleware, security, v1, v2, web
from service.api.v2_catalog import Catalog
from service.batching import Batcher
from service.classifier import Classifier
from service.repository import Repository, load_repository
from service.runtime import OnnxModel, choose_provider
from service.scheduling import Scheduler
from service.settings import Settings

log = logging.getLogger("service")


@dataclass
class Loaded:
    repository: Repository
    provider: str
    models: list[OnnxModel]
    max_batch_size: int
    max_queue_rows: int
    instances: int


def load(settings: Settings) -> Loaded:
    """Choose the provider, read the repository, open and warm every session (blocking)."""
    provider = choose_provider(settings.providers)
    cpu = provider == "cpu"
    precision = settings.precision if settings.precision != "auto" else ("fp32" if cpu else "fp16")
    repository = load_repository(settings.model_repository, precision=precision, limit=settings.models)
    # On CPU batching buys nothing: keep one small batch in flight per core (design.md 5).
    max_batch_size = settings.max_batch_size or (2 if cpu else 128)
    # Shed load before latency grows: a CPU core drains ~20 rows/s, so 32 per core is ~1.6 s of
    # work (docs/benchmarks.md, "Past capacity"); a GPU drains thousands.
    max_queue_rows = settings.max_queue_rows or max(32 * settings.cpu_count if cpu else 4096, max_batch_size)
    instances = settings.instances or (settings.cpu_count if cpu else 2)
    models = []
    for entry in repository.members:
        model = OnnxModel(
            entry.path, provider=provider, instances=instances, max_batch_size=max_batch_size,
            intra_op_threads=settings.intra_op_threads, device_id=settings.device_id,
            cuda_graphs=settings.cuda_graphs,
        )
        model.warm_up()
        metrics.MODEL_INFO.labels(entry.name, str(entry.version), entry.sha256, provider, entry.precision).set(1)
        models.append(model)
    log.info(
        "serving %d models from %s on %s (%s), max_batch_size=%d, max_queue_rows=%d, instances=%d%s",
        len(models), settings.model_repository, provider.upper(), precision, max_batch_size, max_queue_rows,
        instances,
        "" if all(m.trained for m in repository.members) else " -- UNTRAINED random-init weights",
    )
    return Loaded(repository, provider, models, max_batch_size, max_queue_rows, instances)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.configure(settings.log_level, fmt=settings.log_format)  # before the first line of start-up
        loaded = await asyncio.to_thread(load, settings)
        await asyncio.to_thread(gpu.install)  # GPU gauges only where NVML sees a device
        scheduler = Scheduler([
            Batcher(
                model.run, name=entry.name, max_batch_size=loaded.max_batch_size,
                max_delay_s=settings.max_queue_delay_ms / 1000, max_queue_rows=loaded.max_queue_rows,
                concurrency=loaded.instances,
            )
            for entry, model in zip(loaded.repository.members, loaded.models)
        ])
        labels = [(label.wnid, label.name) for label in loaded.repository.labels]
        classifier = Classifier(
            scheduler, labels, max_pixels=settings.max_image_pixels,
            threads=settings.preprocess_threads or settings.cpu_count,
        )
        app.state.repository, app.state.provider = loaded.repository, loaded.provider
        app.state.max_batch_size, app.state.instances = loaded.max_batch_size, loaded.instances
        app.state.max_queue_rows = loaded.max_queue_rows
        app.state.classifier = classifier
        scheduler.start()
        # gRPC listens before readiness turns true, so a port that cannot be had fails the start-up.
        grpc = await grpc_server.start(grpc_server.InferenceServicer(
            classifier=classifier, catalog=Catalog(loaded.repository), settings=settings,
            ready=lambda: app.state.ready, provider=loaded.provider, instances=loaded.instances,
            max_queue_rows=loaded.max_queue_rows, version=app.version,
        ), settings) if settings.grpc_port else None
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if grpc is not None:  # no new calls; those in flight finish first (docs/deployment.md)
                await grpc.stop(settings.shutdown_grace_s)
            try:  # every admitted request gets its answer, unless a batch hangs past the grace period
                await asyncio.wait_for(scheduler.drain(), settings.shutdown_grace_s)
            except TimeoutError:
                log.warning("requests still queued after %.0f s of grace; failing them", settings.shutdown_grace_s)
            await scheduler.stop()
            classifier.close()

    app = FastAPI(
        title="GoogLeNet inference service",
        version="0.1.0",
        summary="GoogLeNet (Szegedy et al. 2014) with the paper's 1/10/144-crop and 7-model ensemble modes.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    errors.install(app)
    app.include_router(health.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(web.router)
    security.install(app, settings)  # inside the request context: 401s get ids and metrics
    app.add_middleware(middleware.RequestContext)
    return app
