"""ONNX Runtime sessions for one model: provider choice, instances, warm-up, `run(rows) -> probabilities`.

`run` is blocking and thread-safe; the batcher calls it from its own threads.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from service.contract import CLASSES, INPUT_NAME, ITEM_SHAPE, OUTPUT_NAME

log = logging.getLogger(__name__)
Provider = Literal["cuda", "cpu"]


class ModelLoadError(Exception):
    """An ONNX file that cannot be served: unreadable, or not the I/O contract of design.md 3.2."""


class ProviderUnavailable(ModelLoadError):
    """The CUDA provider would not start (no device visible, a cuDNN mismatch): providers=auto falls back."""


def _cuda_usable() -> bool:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:  # the driver library: without it the CUDA provider can only fail, loudly
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def choose_provider(requested: Literal["auto", "cuda", "cpu"]) -> Provider:
    """auto = CUDA when a GPU is usable, else CPU; asking for cuda without one is an error."""
    if requested == "cpu":
        return "cpu"
    if _cuda_usable():
        return "cuda"
    if requested == "cuda":
        raise ModelLoadError("providers=cuda, but no usable GPU (no CUDA provider or no NVIDIA driver)")
    return "cpu"


def batch_buckets(max_batch_size: int) -> list[int]:
    """Batch sizes a CUDA session is specialised for: powers of two up to, and including, the max."""
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i < max_batch_size]
    return [*sizes, max_batch_size]


@dataclass
class _Instance:
    session: ort.InferenceSession
    graphs: dict[int, tuple[ort.IOBinding, ort.OrtValue, ort.OrtValue, ort.RunOptions]] = field(default_factory=dict)


class OnnxModel:
    """One model's sessions. On CPU one session is shared by `instances` threads (as fast as N
    sessions, design.md 5); on CUDA each instance owns a session, IO binding and CUDA graphs."""

    def __init__(
        self,
        path: Path,
        *,
        provider: Provider,
        instances: int,
        max_batch_size: int,
        intra_op_threads: int | None = None,
        wide_threads: int = 0,
        device_id: int = 0,
        cuda_graphs: bool = False,
    ) -> None:
        self.path, self.provider, self.device_id = path, provider, device_id
        self.cuda_graphs = cuda_graphs and provider == "cuda"
        self.buckets = batch_buckets(max_batch_size) if provider == "cuda" else []
        count = instances if provider == "cuda" else 1
        sessions = [self._session(intra_op_threads) for _ in range(count)]
        self._check_io(sessions[0])
        self._instances = [_Instance(sessions[i % count]) for i in range(instances)]
        self._pool: queue.SimpleQueue[_Instance] = queue.SimpleQueue()
        for instance in self._instances:
            self._pool.put(instance)
        self.max_batch_size = max_batch_size
        # A batch alone on a CPU device runs with every core (design.md 5: ~28 ms vs ~50 ms on 2).
        wide = provider == "cpu" and wide_threads > 1
        self._wide = self._session(wide_threads, spin_after_run=False) if wide else None

    @property
    def has_wide(self) -> bool:
        return self._wide is not None

    def _session(self, intra_op_threads: int | None, *, spin_after_run: bool = True) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads or 1
        options.inter_op_num_threads = 1
        if not spin_after_run:  # spin within a run (-1.2 ms of 20), never after it: idle pool threads
            # would burn ~40 ms of a core after each run, stolen from the one-thread runs.
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3
        if self.provider == "cuda":
            # Measured on an H200: fp16 + prefer_nhwc + CUDA graphs 25.1k img/s vs 17.3k default
            # (docs/benchmarks.md, gpu-host numbers).
            cuda = {"device_id": str(self.device_id), "prefer_nhwc": "1"}
            if self.cuda_graphs:
                cuda["enable_cuda_graph"] = "1"
            providers: list = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            error = ProviderUnavailable if self.provider == "cuda" else ModelLoadError  # a CPU retry tells which
            raise error(f"cannot load {self.path.parent.parent.name}: {exc.__class__.__name__}") from None

    def _check_io(self, session: ort.InferenceSession) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        ok = (
            len(inputs) == 1 and inputs[0].name == INPUT_NAME and inputs[0].type == "tensor(uint8)"
            and tuple(inputs[0].shape[1:]) == ITEM_SHAPE
            and any(o.name == OUTPUT_NAME and o.type == "tensor(float)" and o.shape[-1] == CLASSES for o in outputs)
        )
        if not ok:
            raise ModelLoadError(
                f"{self.path.name} does not follow the I/O contract: input {INPUT_NAME} uint8 [N,224,224,3], "
                f"output {OUTPUT_NAME} float32 [N,{CLASSES}]"
            )
        if self.provider == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            raise ProviderUnavailable("the CUDA provider failed to start for this model")

    def run(self, rows: np.ndarray) -> np.ndarray:
        """uint8 [n, 224, 224, 3] -> float32 probabilities [n, 1000]."""
        instance = self._pool.get()
        try:
            return self._run_on(instance, rows)
        finally:
            self._pool.put(instance)

    def run_wide(self, rows: np.ndarray) -> np.ndarray:
        """`run` on the session with intra-op threads = cores: for a batch alone on the device."""
        if self._wide is None:
            return self.run(rows)
        return self._wide.run([OUTPUT_NAME], {INPUT_NAME: rows})[0]

    def _run_on(self, instance: _Instance, rows: np.ndarray) -> np.ndarray:
        if self.provider == "cpu":
            return instance.session.run([OUTPUT_NAME], {INPUT_NAME: rows})[0]
        return self._run_cuda(instance, rows)

    def _run_cuda(self, instance: _Instance, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        size = next((b for b in self.buckets if b >= n), n)
        if size != n:  # pad to the bucket, so each bucket keeps one shape (and one CUDA graph)
            rows = np.concatenate([rows, np.zeros((size - n, *rows.shape[1:]), rows.dtype)])
        if not self.cuda_graphs:
            binding = instance.session.io_binding()
            binding.bind_cpu_input(INPUT_NAME, rows)
            binding.bind_output(OUTPUT_NAME, "cuda", self.device_id)
            instance.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0][:n]
        if size not in instance.graphs:
            x = ort.OrtValue.ortvalue_from_shape_and_type((size, *ITEM_SHAPE), np.uint8, "cuda", self.device_id)
            y = ort.OrtValue.ortvalue_from_shape_and_type((size, CLASSES), np.float32, "cuda", self.device_id)
            binding = instance.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, x)
            binding.bind_ortvalue_output(OUTPUT_NAME, y)
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(size))  # one captured graph per bucket
            instance.graphs[size] = (binding, x, y, options)
        binding, x, y, options = instance.graphs[size]
        x.update_inplace(np.ascontiguousarray(rows))
        instance.session.run_with_iobinding(binding, options)
        return y.numpy()[:n].copy()

    def warm_up(self) -> None:
        """Run every batch shape on every instance before the service says it is ready."""
        for instance in self._instances:
            for size in self.buckets or sorted({1, self.max_batch_size}):
                self._run_on(instance, np.zeros((size, *ITEM_SHAPE), np.uint8))
        if self._wide is not None:
            for size in sorted({1, self.max_batch_size}):
                self.run_wide(np.zeros((size, *ITEM_SHAPE), np.uint8))

    def seconds_per_row(self) -> float:
        """One slot's measured cost per row at max_batch_size (after warm-up): admission's seed."""
        rows, best = np.zeros((self.max_batch_size, *ITEM_SHAPE), np.uint8), float("inf")
        for _ in range(3):  # the best of three: a busy host inflates single runs
            started = time.perf_counter()
            self.run(rows)
            best = min(best, time.perf_counter() - started)
        return best / len(rows)
