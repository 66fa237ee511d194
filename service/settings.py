"""The one settings object: every knob, its environment variable (GOOGLENET_*), default and check.

Only this module reads the environment. `python -m service --help` lists the same fields as flags.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOOGLENET_", extra="forbid", frozen=True)

    # Server
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port.")
    grpc_port: int = Field(
        8001, ge=0, le=65535,
        description="TCP port of the KServe v2 gRPC API (Triton's 8001), on the same host; 0 turns gRPC off.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    # Connections (docs/reliability.md, "Connections"): slow and idle clients are cut.
    header_timeout_ms: float = Field(
        10_000, gt=0,
        description="An HTTP request's line and headers must arrive within this of the connection opening or "
        "the previous answer (408 if they started, else closed); also the gRPC handshake's bound.",
    )
    idle_timeout_ms: float = Field(
        15_000, gt=0, description="An HTTP or gRPC connection with no request in flight is closed after this.",
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=4096, description="Bytes of an HTTP request's line and headers (431 past it).",
    )
    max_url_bytes: int = Field(8192, ge=256, description="Bytes of an HTTP request's target (414 past it).")
    grpc_max_streams: int = Field(
        100, ge=1, description="Concurrent gRPC calls on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).",
    )
    grpc_max_connection_age_ms: float = Field(
        600_000, gt=0,
        description="A gRPC connection is closed (GOAWAY) after this; clients reconnect, calls in flight finish.",
    )
    # Graceful stop on SIGTERM (docs/deployment.md): readiness goes false, then after the delay the
    # listener closes and accepted requests get up to the grace period to finish.
    shutdown_delay_s: float = Field(
        0.0, ge=0, le=300,
        description="After SIGTERM, keep serving this long with /readyz failing, so load balancers drop the pod.",
    )
    shutdown_grace_s: float = Field(
        30.0, gt=0, le=3600, description="After the listener closes, how long accepted requests may take to finish."
    )

    # Model repository (docs/architecture.md 3.1)
    model_repository: Path = Field(Path("model_repository"), description="Folder of the model repository.")
    models: int | None = Field(
        None, ge=1, description="Load only the first N ensemble members (default: all)."
    )

    # Runtime
    providers: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="ONNX Runtime provider: auto picks CUDA when a GPU is usable, else CPU."
    )
    device_id: int = Field(0, ge=0, description="CUDA device id.")
    precision: Literal["auto", "fp32", "fp16"] = Field(
        "auto", description="Model file to serve: auto = fp16 on CUDA when the repository has it, else fp32."
    )
    instances: int | None = Field(
        None, ge=1, le=64,
        description="Run slots of the device, shared by every model (default: CPU cores + 1 on CPU; 2 lanes on CUDA, "
        "each a thread with one session of every model).",
    )
    intra_op_threads: int | None = Field(
        None, ge=1,
        description="ONNX Runtime threads per batch when several run at once (default: 1 on CPU, so the "
        "slots use the cores); a batch alone on a CPU device uses every core.",
    )
    cuda_graphs: bool = Field(
        True,
        description="Capture a CUDA graph per batch-size bucket at warm-up (CUDA only; inputs padded to the "
        "bucket). A bucket whose capture fails is served without one, logged and counted.",
    )
    gpu_memory_limit_mib: int = Field(
        6144, ge=256,
        description="Device memory ONNX Runtime's arena may hold for every model's runs together (CUDA only); "
        "the CUDA context and libraries come on top (docs/benchmarks.md: about 1 GiB).",
    )
    cudnn_conv_algo_search: Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"] = Field(
        "HEURISTIC",
        description="How cuDNN picks convolution algorithms per shape (CUDA only): HEURISTIC starts in seconds; "
        "EXHAUSTIVE times every algorithm at warm-up (docs/benchmarks.md compares them).",
    )

    # Batching (docs/architecture.md 5)
    max_batch_size: int | None = Field(
        None, ge=1, le=4096,
        description="Rows (crops) per batch (default: 2 on CPU, where batching buys nothing, 128 on CUDA).",
    )
    max_queue_delay_ms: float | None = Field(
        None, ge=0, le=10_000,
        description="Longest wait from the first queued row before a partial batch runs (default: 0 on CPU, "
        "where a free core gains nothing by waiting for a second row; 2 on CUDA).",
    )
    max_queue_wait_ms: float | None = Field(
        None, gt=0,
        description="Longest estimated wait (work ahead under the fair cut) a request is admitted with; "
        "beyond it 503 + Retry-After (default: 8000 on CPU, 1000 on CUDA).",
    )
    max_queue_rows: int | None = Field(
        None, ge=1,
        description="Memory cap: rows a model's queue holds, from admission (before decoding) to the batch; "
        "a larger request is admitted into an empty queue only (default: 4096, about 600 MB of crops).",
    )

    # Limits
    max_body_bytes: int = Field(20 * 2**20, ge=1, description="Largest request body, enforced while reading.")
    max_inflight_body_bytes: int = Field(
        256 * 2**20, ge=1,
        description="Bytes of request bodies held at once, over all requests, counted as they arrive (and a "
        "compressed v2 body's inflated bound); past it 503 + Retry-After (at least max_body_bytes).",
    )
    body_read_timeout_ms: float = Field(
        10_000, gt=0, description="Longest pause between two pieces of a request body before 408.",
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="Largest decoded image (width x height), checked before decoding."
    )
    max_aspect_ratio: float = Field(
        32.0, ge=1, description="Longest over shortest side an image may have (422 past it), checked on the header."
    )
    max_image_segments: int = Field(
        1024, ge=16,
        description="JPEG marker segments, PNG chunks (image data chunks of 4 KiB or more aside) or GIF blocks "
        "before the first frame an image may have (422 past it), counted before the image library parses them.",
    )
    max_decode_ms: float = Field(
        1000.0, gt=0,
        description="CPU time one image's decode may take: priced from its header (pixels, bit depth, progressive "
        "scans) and refused (422) past it, and stopped if it runs past it.",
    )
    max_decode_bytes: int = Field(
        192 * 2**20, ge=2**20,
        description="Memory of images being decoded at once (each priced from its header); one that alone needs "
        "more is refused (422), others wait for room.",
    )
    max_images_per_request: int = Field(16, ge=1, description="Images in one multipart request.")
    # 60 s: the paper's best mode (144 crops x 7 models, 1,008 evaluations) takes 25-30 s on 2 CPU cores.
    request_timeout_ms: float = Field(
        60_000, gt=0, description="Deadline of a request that sets none (deadline_ms caps at this value)."
    )
    partial_margin_ms: float = Field(
        50, ge=0, le=10_000,
        description="A partial=true request is answered this long before its deadline (at most a quarter of "
        "its time), so that the answer itself, not only its computation, arrives by then.",
    )
    preprocess_threads: int | None = Field(
        None, ge=1, description="Threads that decode and crop images (default: CPU cores)."
    )

    # Security and logs (docs/reliability.md)
    api_token: SecretStr | None = Field(
        None, description="Bearer token the API requires (unset: no authentication); prefer the variable to the flag.",
    )
    auth_probes: bool = Field(
        False, description="Also require the token on /healthz, /readyz, /metrics and /v2/health/*.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated origins whose browser pages may call the API (empty: CORS off).",
    )
    log_format: Literal["json", "text"] = Field("json", description="Log lines as JSON objects or plain text.")
    api_docs: bool = Field(
        False,
        description="Serve /docs and /redoc (their pages load scripts from a CDN); /openapi.json is always served.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # The variable and the flag give one string: "https://a.example,https://b.example".
        return [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_batch_size and self.max_queue_rows and self.max_batch_size > self.max_queue_rows:
            raise ValueError("max_batch_size must not exceed max_queue_rows")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError("max_inflight_body_bytes must be at least max_body_bytes: one largest body must fit")
        return self

    @property
    def cpu_count(self) -> int:
        """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a 2-CPU pod on a
        64-core node sees 64 cores in the affinity; os.process_cpu_count does not read quotas)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        quota = cgroup_cpu_quota()
        return max(1, min(cores, math.ceil(quota))) if quota else cores


CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP) -> float | None:
    """CPUs the cgroup quota allows (quota / period), or None when unlimited or unreadable:
    cgroup v2's cpu.max ("max 100000" or "200000 100000"), else v1's cpu.cfs_quota_us / cfs_period_us."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
