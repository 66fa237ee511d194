"""Every Prometheus metric of the service, as module constants: base units, closed label sets.

One process is the deployment unit (its batcher is what makes batches), so the default
registry is used as is; scale out with replicas, not uvicorn workers (docs/deployment.md).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from service.stopping import REASONS as STOP_REASONS

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter(
    "googlenet_requests", "HTTP requests answered, by route template, status code and mode.",
    ["route", "status", "mode"],
)
REQUEST_DURATION = Histogram(
    "googlenet_request_duration_seconds", "End-to-end time of answered requests, by route and mode.",
    ["route", "mode"], buckets=_LATENCY_BUCKETS,
)
INFLIGHT_REQUESTS = Gauge("googlenet_inflight_requests", "Requests being served now.")
REJECTIONS = Counter(
    "googlenet_rejections", "Requests refused before inference, by reason.", ["reason"],
)
REJECTION_REASONS = (
    "queue_full", "deadline", "bad_input", "too_large", "client_gone", "unauthorized", "infeasible",
)
for _reason in REJECTION_REASONS:
    REJECTIONS.labels(_reason)

PREPROCESS_DURATION = Histogram(
    "googlenet_preprocess_duration_seconds", "Decode, resize and crop time per image, by crop count.",
    ["crops"], buckets=_LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "googlenet_queue_wait_seconds", "Time a row waited in its model's queue before its batch ran.",
    ["model"], buckets=_LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "googlenet_inference_duration_seconds", "Model compute time per batch.", ["model"], buckets=_LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram("googlenet_batch_rows", "Rows (crops) per batch run.", ["model"], buckets=_ROW_BUCKETS)
BATCH_FILL = Histogram(
    "googlenet_batch_fill_ratio", "Rows per batch over max_batch_size.", ["model"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
BATCHES = Counter("googlenet_batches", "Batches run, by model and outcome (ok | error).", ["model", "outcome"])
EVALUATED_ROWS = Counter("googlenet_evaluated_rows", "Rows evaluated by the model (padding excluded).", ["model"])
QUEUE_ROWS = Gauge(
    "googlenet_queue_rows", "Rows admitted to a model's queue and not yet in a batch (decoding or waiting).", ["model"]
)
MODEL_INFO = Gauge(
    "googlenet_model_info", "Loaded models (value 1), with version, file hash, provider and precision.",
    ["model", "version", "sha256", "provider", "precision"],
)

# Admission by time (service/admission.py): the estimate next to what happened, for the dashboard.
SECONDS_PER_ROW = Gauge(
    "googlenet_row_cost_seconds", "Estimated run-slot seconds per row (crop) of each model (admission).", ["model"]
)
BATCH_OVERHEAD = Gauge(
    "googlenet_batch_overhead_seconds",
    "Estimated run-slot seconds of each model's batch whatever its rows (admission: fixed + rows x row cost).",
    ["model"],
)
PREPROCESS_COST = Gauge(
    "googlenet_preprocess_cost_seconds", "Estimated decode-thread seconds per image, by crop count (admission).",
    ["crops"],
)
ESTIMATED_WAIT = Histogram(
    "googlenet_estimated_wait_seconds", "Estimated wait of admitted requests (work ahead under the fair cut).",
    buckets=_LATENCY_BUCKETS,
)
ESTIMATED_COMPLETION = Histogram(
    "googlenet_estimated_completion_seconds", "Estimated admission-to-answer time of admitted requests.",
    buckets=_LATENCY_BUCKETS,
)
ACTUAL_COMPLETION = Histogram(
    "googlenet_completion_seconds", "Actual admission-to-answer time of admitted requests (compare the estimate).",
    buckets=_LATENCY_BUCKETS,
)
ESTIMATE_RATIO = Histogram(
    "googlenet_completion_estimate_ratio", "Actual over estimated completion time of each admitted request.",
    buckets=(0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5),
)
CUDA_GRAPH_FALLBACKS = Counter(
    "googlenet_cuda_graph_fallbacks",
    "Batch-size buckets served without a CUDA graph because its capture failed or replayed differently.",
    ["model"],
)
AUTO_CHOICES = Counter(
    "googlenet_auto_choices", "Configurations chosen by crops=auto / ensemble=auto, by mode (crops x models).",
    ["mode"],
)

# Adaptive walks up the Table 3 ladder (service/adaptive.py): crops=/ensemble=adaptive, and fixed
# modes asked with partial=true (anytime: the rungs below run first).
WALK_MODES = ("adaptive", "anytime")
WALK_EVALUATIONS = Histogram(
    "googlenet_walk_evaluated_rows", "Model evaluations (crops x members run) per image of a walk, by mode.",
    ["mode"], buckets=(1, 2, 7, 10, 14, 28, 70, 144, 288, 504, 1008),
)
WALK_STOPS = Counter(
    "googlenet_walk_stops", "Images whose walk ended, by mode and reason (service/stopping.py REASONS).",
    ["mode", "reason"],
)
PARTIAL_ANSWERS = Counter(
    "googlenet_partial_answers", "Answers given at the deadline with what had finished (partial=true), by mode.",
    ["mode"],
)
for _mode in WALK_MODES:
    WALK_EVALUATIONS.labels(_mode)
    PARTIAL_ANSWERS.labels(_mode)
    for _reason in STOP_REASONS:
        WALK_STOPS.labels(_mode, _reason)
