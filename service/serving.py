"""The serving object: what the lifespan loads and every handler needs, in one typed place.

`open_serving` chooses the provider, reads the repository, opens and warms the sessions and wires
runtime -> batchers -> scheduler -> classifier; the api layer receives the result through a
FastAPI dependency (service/api/deps.py), never through an untyped bag.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from service import metrics
from service.admission import CostModel
from service.batching import Batcher
from service.classifier import Classifier
from service.decode_cost import DecodeLimits, DecodeMemory
from service.executor import DeviceExecutor
from service.repository import Repository, load_repository
from service.runtime import OnnxModel, ProviderUnavailable, choose_provider
from service.scheduling import Scheduler
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
        # On CPU batching buys nothing: keep one small batch in flight per core (design.md 5).
        max_batch_size = settings.max_batch_size or (2 if cpu else 128)
        # 16 concurrent 10-crop requests are 160 rows, ~4 s at ~40 rows/s on 2 cores: 8 s admits
        # that burst with room for a shared machine (docs/benchmarks.md); a GPU drains thousands.
        default_wait_ms = 8000.0 if cpu else 1000.0
        # On CPU a batch of 2 costs twice one row: waiting for a second row only delays the first
        # (+7% img/s and -3 ms p50 at one client, docs/benchmarks.md); a GPU batch is nearly free.
        delay_ms = settings.max_queue_delay_ms if settings.max_queue_delay_ms is not None else (0.0 if cpu else 2.0)
        return cls(
            provider=provider,
            precision=settings.precision if settings.precision != "auto" else ("fp32" if cpu else "fp16"),
            max_batch_size=max_batch_size,
            max_queue_rows=settings.max_queue_rows or max(4096, max_batch_size),
            max_queue_wait_ms=settings.max_queue_wait_ms or default_wait_ms,
            max_queue_delay_ms=delay_ms,
            instances=settings.instances or (settings.cpu_count if cpu else 2),
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

    @property
    def failure(self) -> Exception | None:
        """Set for good once a dispatch loop crashed: nothing would run, so liveness fails too."""
        return self.classifier.scheduler.failure

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


def _open_models(settings: Settings, repository: Repository, plan: Plan, cost: CostModel) -> list[OnnxModel]:
    models = []
    for entry in repository.members:
        model = OnnxModel(
            entry.path, provider=plan.provider, instances=plan.instances, max_batch_size=plan.max_batch_size,
            intra_op_threads=settings.intra_op_threads, device_id=settings.device_id,
            cuda_graphs=settings.cuda_graphs, wide_threads=settings.cpu_count if plan.provider == "cpu" else 0,
        )
        model.warm_up()
        cost.seed(entry.name, model.seconds_per_row())
        metrics.MODEL_INFO.labels(entry.name, str(entry.version), entry.sha256, plan.provider, entry.precision).set(1)
        models.append(model)
    return models


def _open(settings: Settings, provider: str, cost: CostModel) -> tuple[Plan, Repository, list[OnnxModel]]:
    plan = Plan.resolve(settings, provider)
    repository = load_repository(settings.model_repository, precision=plan.precision, limit=settings.models)
    return plan, repository, _open_models(settings, repository, plan, cost)


def open_serving(settings: Settings) -> Serving:
    """Load everything (blocking: run it off the event loop). The batchers start with `start`."""
    cost = CostModel()
    try:
        plan, repository, models = _open(settings, choose_provider(settings.providers), cost)
    except ProviderUnavailable as exc:
        if settings.providers != "auto":  # asked for CUDA by name: failing is the answer
            raise
        log.warning("providers=auto: the CUDA provider failed (%s); serving on the CPU instead", exc)
        plan, repository, models = _open(settings, "cpu", cost)
    device = DeviceExecutor(plan.instances, name=plan.provider)  # one compute budget for every member
    scheduler = Scheduler(
        [
            Batcher(
                model.run, name=entry.name, max_batch_size=plan.max_batch_size,
                max_delay_s=plan.max_queue_delay_ms / 1000, max_queue_rows=plan.max_queue_rows,
                executor=device, run_wide=model.run_wide if model.has_wide else None, cost=cost,
            )
            for entry, model in zip(repository.members, models, strict=True)
        ],
        cost=cost, max_wait_s=plan.max_queue_wait_ms / 1000,
    )
    classifier = Classifier(
        scheduler, [(label.wnid, label.name) for label in repository.labels],
        max_pixels=settings.max_image_pixels, max_aspect=settings.max_aspect_ratio,
        threads=settings.preprocess_threads or settings.cpu_count,
        limits=DecodeLimits(settings.max_image_segments, settings.max_decode_ms / 1000,
                            DecodeMemory(settings.max_decode_bytes)),
    )
    log.info(
        "serving %d models from %s on %s (%s), max_batch_size=%d, max_queue_wait_ms=%g, max_queue_rows=%d, "
        "run slots=%d%s",
        len(models), settings.model_repository, plan.provider.upper(), plan.precision, plan.max_batch_size,
        plan.max_queue_wait_ms, plan.max_queue_rows, plan.instances,
        "" if all(m.trained for m in repository.members) else " -- UNTRAINED random-init weights",
    )
    return Serving(settings, repository, plan, classifier)
