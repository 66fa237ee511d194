"""ModelStatistics from what the service already counts (service/metrics.py), per repository member:
the members are what batch and run, so an ensemble's or a `-tensor` model's statistics are those
of its members (docs/protocol-v2.md, "gRPC")."""

from __future__ import annotations

from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb

from service.api.v2_catalog import V2Model
from service.repository import Repository


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _duration(histogram: str, model: str) -> dict[str, int]:
    return {"count": int(_value(f"{histogram}_count", model=model)),
            "ns": int(_value(f"{histogram}_sum", model=model) * 1e9)}


def model_statistics(repository: Repository, models: list[V2Model]) -> pb.ModelStatisticsResponse:
    versions = {m.name: str(m.version) for m in repository.members}
    names = list(dict.fromkeys(member for model in models for member in model.members))
    return pb.ModelStatisticsResponse(model_stats=[
        {
            "name": name,
            "version": versions[name],
            "inference_count": int(_value("googlenet_evaluated_rows_total", model=name)),  # rows (crops)
            "execution_count": int(_value("googlenet_batches_total", model=name, outcome="ok")),
            "inference_stats": {
                "queue": _duration("googlenet_queue_wait_seconds", name),  # per request slice of a batch
                "compute_infer": _duration("googlenet_inference_duration_seconds", name),  # per batch
                "fail": {"count": int(_value("googlenet_batches_total", model=name, outcome="error"))},
            },
        }
        for name in names
    ])
