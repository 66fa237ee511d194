"""The server's own view of a run: /metrics read before and after, turned into deltas (batch sizes,
queue wait, inference time, answers by status, rejections). Metric names: service/metrics.py."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


@dataclass(frozen=True)
class Snapshot:
    samples: dict[Key, float]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if not s.name.endswith("_created"):  # creation timestamps are not counts
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return cls(samples)

    def __sub__(self, before: Snapshot) -> Snapshot:
        return Snapshot({k: v - before.samples.get(k, 0.0) for k, v in self.samples.items()})

    def total(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def by_label(self, name: str, label: str, *, unless: dict[str, str] | None = None) -> dict[str, float]:
        """Sum of `name` by the values of `label`, leaving out samples that match any of `unless`."""
        out: dict[str, float] = defaultdict(float)
        for (n, ls), v in self.samples.items():
            labels = dict(ls)
            if n == name and not any(labels.get(k) == x for k, x in (unless or {}).items()):
                out[labels.get(label, "")] += v
        return {k: v for k, v in out.items() if v}

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) of a histogram, summed over its other labels."""
        out: dict[float, float] = defaultdict(float)
        for (n, ls), v in self.samples.items():
            if n == f"{name}_bucket":
                out[float(dict(ls)["le"])] += v
        return sorted(out.items())


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket that holds the q-th observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: report that bound, as Prometheus does
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def _mean(delta: Snapshot, name: str) -> float | None:
    count = delta.total(f"{name}_count")
    return delta.total(f"{name}_sum") / count if count else None


def server_stats(before: Snapshot, after: Snapshot) -> dict[str, object]:
    """What the server saw between the two scrapes; means in ms, batch sizes in rows."""
    d = after - before
    wait = d.buckets("googlenet_queue_wait_seconds")
    def ms(v):
        return None if v is None else v * 1000
    return {
        # Our own scrape of /metrics is a request too: left out.
        "requests_by_status": d.by_label("googlenet_requests_total", "status", unless={"route": "/metrics"}),
        "rejections": d.by_label("googlenet_rejections_total", "reason"),
        "batches": d.total("googlenet_batch_rows_count"),
        "mean_batch_rows": _mean(d, "googlenet_batch_rows"),
        "batch_rows_buckets": d.buckets("googlenet_batch_rows"),
        "evaluated_rows": d.total("googlenet_evaluated_rows_total"),
        "queue_wait_ms": {"mean": ms(_mean(d, "googlenet_queue_wait_seconds")),
                          "p50": ms(quantile(wait, 0.5)), "p99": ms(quantile(wait, 0.99))},
        "inference_ms_per_batch": ms(_mean(d, "googlenet_inference_duration_seconds")),
        # admission's estimate against what happened (actual / estimated completion), per request
        "estimate_ratio": {q: quantile(d.buckets("googlenet_completion_estimate_ratio"), v)
                           for q, v in (("p50", 0.5), ("p90", 0.9))},
        "preprocess_ms_per_image": ms(_mean(d, "googlenet_preprocess_duration_seconds")),
    }
