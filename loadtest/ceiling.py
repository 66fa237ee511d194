"""The limits a server is measured against: the model alone in ONNX Runtime (throughput by batch size
and threading, no HTTP, no preprocessing) and preprocessing alone (CPU seconds per image by crops)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.contract import INPUT_NAME, OUTPUT_NAME
from service.preprocess import preprocess

INPUT_SHAPE = (224, 224, 3)


@dataclass(frozen=True)
class ModelPoint:
    """One configuration: `streams` threads each running batches of `batch` rows on one session."""

    batch: int
    streams: int
    intra_op_threads: int
    images_per_s: float
    cpu_cores: float  # process CPU time over wall time while it ran
    ms_per_batch: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def cpu_session(path: Path, intra_op_threads: int) -> ort.InferenceSession:
    """The service's CPU session options (service/runtime.py), with the given intra-op threads."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_streams(
    run, batch: int, streams: int, duration_s: float, *, min_batches: int = 2
) -> tuple[float, float, float]:
    """Call `run(rows)` from `streams` threads for `duration_s` (after one warm-up call each).

    Returns (images/s, CPU cores used, ms per batch). Every thread stops at the deadline or after
    `min_batches`, whichever is later, so slow configurations still get a measurement.
    """
    rows = np.random.default_rng(batch).integers(0, 256, (batch, *INPUT_SHAPE), dtype=np.uint8)
    for _ in range(streams):
        run(rows)
    counts = [0] * streams
    start_gate = threading.Barrier(streams + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        start_gate.wait()
        while counts[i] < min_batches or time.perf_counter() < deadline[0]:
            run(rows)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline[0] = wall0 + duration_s
    start_gate.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    batches = sum(counts)
    return batches * batch / wall, (time.process_time() - cpu0) / wall, wall * streams / batches * 1000


def model_ceiling_cpu(path: Path, *, cores: int, batches: tuple[int, ...] = (1, 2, 4, 8),
                      duration_s: float = 4.0) -> list[ModelPoint]:
    """One session shared by `cores` threads with one intra-op thread each (the service's layout),
    and one stream with `cores` intra-op threads (ONNX Runtime's own parallelism)."""
    points = []
    for streams, intra in sorted({(cores, 1), (1, cores)}):
        session = cpu_session(path, intra)

        def run(rows, s=session):
            return s.run([OUTPUT_NAME], {INPUT_NAME: rows})[0]

        for batch in batches:
            ips, cpu, ms = measure_streams(run, batch, streams, duration_s)
            points.append(ModelPoint(batch, streams, intra, ips, cpu, ms))
        del session
    return points


def preprocess_cost(images: list[bytes], crops: int, *, max_images: int, max_pixels: int = 50_000_000) -> float:
    """CPU seconds per image of decode + resize + crops, on one thread (the service's code)."""
    chosen = images[:max_images]
    preprocess(chosen[0], crops, max_pixels=max_pixels)  # first call pays for lazy imports
    cpu0 = time.thread_time()
    for data in chosen:
        preprocess(data, crops, max_pixels=max_pixels)
    return (time.thread_time() - cpu0) / len(chosen)


@dataclass(frozen=True)
class Limit:
    """What the machine can do for one mode: images/s when the cores do nothing but the model at its
    best and the preprocessing (the CPU seconds per image of both, over the cores)."""

    mode: str
    evaluations: int
    model_s_per_image: float  # core-seconds
    preprocess_s_per_image: float  # core-seconds
    images_per_s: float


def limit_for(mode_name: str, evaluations: int, *, best_images_per_s: float, cores: int,
              preprocess_s: float) -> Limit:
    model_s = evaluations * cores / best_images_per_s
    return Limit(mode_name, evaluations, model_s, preprocess_s, cores / (model_s + preprocess_s))
