"""ModelStatistics from what the service already counts (service/metrics.py), per repository member:
the members are what batch and run, so an ensemble's or a `-tensor` model's statistics are those
of its members (docs/protocol-v2.md, "gRPC").

Each call collects only the four metrics it reports, once: a collect of the whole registry per value
made 20 concurrent calls hold the event loop for ~100 ms."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase
from tritonclient.grpc import service_pb2 as pb

from service import metrics
from service.api.v2.catalog import V2Model
from service.repository import Repository

_REPORTED = (metrics.EVALUATED_ROWS, metrics.BATCHES, metrics.QUEUE_WAIT, metrics.INFERENCE_DURATION)


def _samples(metric: MetricWrapperBase) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in metric.collect() for s in family.samples}


def model_statistics(repository: Repository, models: list[V2Model]) -> pb.ModelStatisticsResponse:
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for metric in _REPORTED:
        values.update(_samples(metric))

    def value(name: str, **labels: str) -> float:
        return values.get((name, tuple(sorted(labels.items()))), 0.0)

    def duration(histogram: str, model: str) -> dict[str, int]:
        return {"count": int(value(f"{histogram}_count", model=model)),
                "ns": int(value(f"{histogram}_sum", model=model) * 1e9)}

    versions = {m.name: str(m.version) for m in repository.members}
    names = list(dict.fromkeys(member for model in models for member in model.members))
    return pb.ModelStatisticsResponse(model_stats=[
        {
            "name": name,
            "version": versions[name],
            "inference_count": int(value("googlenet_evaluated_rows_total", model=name)),  # rows (crops)
            "execution_count": int(value("googlenet_batches_total", model=name, outcome="ok")),
            "inference_stats": {
                "queue": duration("googlenet_queue_wait_seconds", name),  # per request slice of a batch
                "compute_infer": duration("googlenet_inference_duration_seconds", name),  # per batch
                "fail": {"count": int(value("googlenet_batches_total", model=name, outcome="error"))},
            },
        }
        for name in names
    ])
