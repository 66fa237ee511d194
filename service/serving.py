"""The serving object: what the lifespan loads and every handler needs, in one typed place.

`open_serving` chooses the provider, reads the repository, opens and warms the sessions and wires
runtime -> the batching (service/batching) -> classifier; the api layer receives the result through a
FastAPI dependency (service/api/deps.py), never through an untyped bag.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from service import gpu, metrics
from service.admission import CostModel
from service.batching import Device, Ensemble, MemberQueue
from service.classifier import Classifier
from service.cuda import CudaConfig, CudaDevice
from service.decode_cost import DecodeLimits, DecodeMemory
from service.repository import Repository, load_repository
from service.runtime import OnnxModel, ProviderUnavailable, choose_provider
from service.settings import Settings

log = logging.getLogger("service")


@dataclass(frozen=True)
class Plan:
    """The batching settings as resolved for the provider: the one answer to "what is max_batch_size"."""

    provider: str
    precision: str
    max_batch_size: int
    max_queue_rows: int
    max_queue_wait_ms: float
    max_queue_delay_ms: float
    instances: int  # run slots of the device, shared by every member

    @classmethod
    def resolve(cls, settings: Settings, provider: str) -> Plan:
        cpu = provider == "cpu"
        # On CPU batching buys nothing: keep small batches in flight on every core (docs/architecture.md 6).
        max_batch_size = settings.max_batch_size or (2 if cpu else 128)
        # 16 concurrent 10-crop requests are 160 rows, ~4 s at ~40 rows/s on 2 cores: 8 s admits
        # that burst with room for a shared machine (docs/benchmarks.md); a GPU drains thousands.
        default_wait_ms = 8000.0 if cpu else 1000.0
        # A free slot runs what is queued at once (+7% img/s and -3 ms p50 at one client on CPU,
        # docs/benchmarks.md); batches form from the rows that queue while the slots are busy.
        delay_ms = settings.max_queue_delay_ms if settings.max_queue_delay_ms is not None else 0.0
        return cls(
            provider=provider,
            precision=settings.precision if settings.precision != "auto" else ("fp32" if cpu else "fp16"),
            max_batch_size=max_batch_size,
            max_queue_rows=settings.max_queue_rows or max(4096, max_batch_size),
            max_queue_wait_ms=settings.max_queue_wait_ms or default_wait_ms,
            max_queue_delay_ms=delay_ms,
            # One slot more than cores: a core whose batch ends has the next one ready instead of
            # waiting on the event loop to dispatch it (+2-4% img/s at 4-64 clients on 2 cores).
            instances=settings.instances or (settings.cpu_count + 1 if cpu else 2),
        )


@dataclass(eq=False)  # identity, not value: one per running app (api caches per-serving views)
class Serving:
    settings: Settings
    repository: Repository
    plan: Plan
    classifier: Classifier
    accepting: bool = False  # false while loading or draining: accepted work still completes
    draining: bool = False  # SIGTERM's delay: readiness false, every protocol still serves (service/lifecycle.py)
    stop_by: float | None = None  # loop time the one grace period of a stop ends (set when the listener closes)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # the listener closed: gRPC stops too
    device: CudaDevice | None = None

    def close(self) -> None:
        self.classifier.close()
        if self.device is not None:
            self.device.close()

    @property
    def failure(self) -> Exception | None:
        """Set for good once a dispatch loop crashed: nothing would run, so liveness fails too."""
        return self.classifier.ensemble.failure

    @property
    def serves(self) -> bool:
        """Takes new work: the handlers' `Ready` dependency and gRPC calls (also during the delay)."""
        return self.accepting and self.failure is None

    @property
    def ready(self) -> bool:
        """Tells load balancers to send work: /readyz, /v2/health/ready, gRPC ServerReady."""
        return self.serves and not self.draining

    @property
    def provider(self) -> str:
        return self.plan.provider

    def trained(self, members: list[str]) -> bool:
        by_name = {m.name: m for m in self.repository.members}
        return all(by_name[name].trained for name in members)


def _cuda_device(settings: Settings, plan: Plan, members: int) -> CudaDevice | None:
    if plan.provider != "cuda":
        return None
    config = CudaConfig(
        device_id=settings.device_id, lanes=plan.instances, memory_limit_bytes=settings.gpu_memory_limit_mib << 20,
        graphs=settings.cuda_graphs, conv_algo_search=settings.cudnn_conv_algo_search,
    )
    try:
        return CudaDevice(config, max_batch_size=plan.max_batch_size, models=members)
    except Exception as exc:  # no memory for the buffers, a broken driver: as a provider that failed
        raise ProviderUnavailable(f"the CUDA provider would not open the device: {type(exc).__name__}: {exc}") from None


def _open_models(
    settings: Settings, repository: Repository, plan: Plan, device: CudaDevice | None, cost: CostModel
) -> list[OnnxModel]:
    models = []
    for entry in repository.members:
        model = OnnxModel(
            entry.path, provider=plan.provider, max_batch_size=plan.max_batch_size,
            intra_op_threads=settings.intra_op_threads, device=device,
            wide_threads=settings.cpu_count if plan.provider == "cpu" else 0,
        )
        models.append(model)
    for entry, model in zip(repository.members, models, strict=True):  # every session exists before any capture
        model.warm_up()
        fixed, per_row = model.costs()
        cost.seed(entry.name, per_row, fixed)
        metrics.MODEL_INFO.labels(entry.name, str(entry.version), entry.sha256, plan.provider, entry.precision).set(1)
        if model.cuda is not None:
            held = gpu.process_memory_bytes(os.getpid(), settings.device_id)
            log.info("%s on CUDA: nodes per provider %s, %d of %d buckets replay a CUDA graph; batch cost "
                     "%.2f ms + %.3f ms per row; GPU memory held so far %s MiB", entry.name, model.cuda.placement(),
                     model.cuda.graph_buckets(), len(model.cuda.device.lanes) * len(model.cuda.device.buckets),
                     fixed * 1000, per_row * 1000, "unknown" if held is None else held >> 20)
    return models


Opened = tuple[Plan, Repository, list[OnnxModel], CudaDevice | None]


def _open(settings: Settings, provider: str, cost: CostModel) -> Opened:
    plan = Plan.resolve(settings, provider)
    repository = load_repository(settings.model_repository, precision=plan.precision, limit=settings.models)
    device = _cuda_device(settings, plan, len(repository.members))
    try:
        return plan, repository, _open_models(settings, repository, plan, device, cost), device
    except BaseException:
        if device is not None:
            device.close()
        raise


def open_serving(settings: Settings) -> Serving:
    """Load everything (blocking: run it off the event loop). The queues start with `Ensemble.start`."""
    cost = CostModel()
    try:
        plan, repository, models, cuda = _open(settings, choose_provider(settings.providers), cost)
    except ProviderUnavailable as exc:
        if settings.providers != "auto":  # asked for CUDA by name: failing is the answer
            raise
        log.warning("providers=auto: the CUDA provider failed (%s); serving on the CPU instead", exc)
        plan, repository, models, cuda = _open(settings, "cpu", cost)
    # One compute budget for every member; on CUDA its slots are the device's lanes.
    device = Device(plan.instances, name=plan.provider, lanes=cuda.executors if cuda else None)
    ensemble = Ensemble(
        [
            MemberQueue(
                model.run_timed, name=entry.name, max_batch_size=plan.max_batch_size,
                max_delay_s=plan.max_queue_delay_ms / 1000, max_queue_rows=plan.max_queue_rows,
                device=device, run_wide=model.run_wide if model.has_wide else None, cost=cost,
            )
            for entry, model in zip(repository.members, models, strict=True)
        ],
        cost=cost, max_wait_s=plan.max_queue_wait_ms / 1000,
    )
    classifier = Classifier(
        ensemble, [(label.wnid, label.name) for label in repository.labels],
        max_pixels=settings.max_image_pixels, max_aspect=settings.max_aspect_ratio,
        threads=settings.preprocess_threads or settings.cpu_count,
        limits=DecodeLimits(settings.max_image_segments, settings.max_decode_ms / 1000,
                            DecodeMemory(settings.max_decode_bytes)),
    )
    classifier.calibrate()
    log.info(
        "serving %d models from %s on %s (%s), max_batch_size=%d, max_queue_wait_ms=%g, max_queue_rows=%d, "
        "run slots=%d%s",
        len(models), settings.model_repository, plan.provider.upper(), plan.precision, plan.max_batch_size,
        plan.max_queue_wait_ms, plan.max_queue_rows, plan.instances,
        "" if all(m.trained for m in repository.members) else " -- UNTRAINED random-init weights",
    )
    return Serving(settings, repository, plan, classifier, device=cuda)
