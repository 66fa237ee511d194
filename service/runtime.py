"""ONNX Runtime sessions for one model: provider choice, sessions, warm-up, `run(rows) -> probabilities`.

`run` is blocking and thread-safe; the device (service/batching/device.py) calls it from its run slots. On
CUDA the sessions live on the device's lanes (service/cuda.py); on CPU one session is shared.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from service.contract import CLASSES, INPUT_NAME, ITEM_SHAPE, OUTPUT_NAME
from service.cuda import CudaDevice, CudaSessions

log = logging.getLogger(__name__)
Provider = Literal["cuda", "cpu"]
Rows = np.ndarray | Sequence[np.ndarray]  # one array, or parts to run as one batch


class ModelLoadError(Exception):
    """An ONNX file that cannot be served: unreadable, or not the I/O contract (docs/model-repository.md)."""


class ProviderUnavailable(ModelLoadError):
    """The CUDA provider would not start (no device visible, a cuDNN mismatch): providers=auto falls back."""


@dataclass(frozen=True)
class BatchRun:
    """One batch's probabilities and where its time went, in seconds."""

    outputs: np.ndarray
    copy_in_s: float = 0.0  # host rows into the device's input buffer (CUDA)
    compute_s: float = 0.0  # the run, waiting for the device included
    copy_out_s: float = 0.0  # probabilities back to the host (CUDA)


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


def measure_costs(run: Callable[[int], object], largest: int) -> tuple[float, float]:
    """(fixed seconds per batch, seconds per row): seconds(n) = fixed + n * per_row through the
    best of three runs at n = 1 and at n = `largest` (admission's seed, service/admission.py)."""

    def best(n: int) -> float:
        times = []
        for _ in range(3):  # the best of three: a busy host inflates single runs
            started = time.perf_counter()
            run(n)
            times.append(time.perf_counter() - started)
        return min(times)

    one = best(1)
    if largest == 1:
        return 0.0, max(one, 1e-9)
    many = max(best(largest), 1e-9)
    per_row = (many - one) / (largest - 1)
    if per_row <= 0 or one - per_row < 0:  # noise: a pure per-row cost
        return 0.0, many / largest
    return one - per_row, per_row


class OnnxModel:
    """One model's sessions. On CPU one session serves every run slot (as fast as one session per
    slot, and half the memory), plus a wide one for a batch alone on the device; on CUDA a session
    per lane of `device` (service/cuda.py)."""

    def __init__(
        self,
        path: Path,
        *,
        provider: Provider,
        max_batch_size: int,
        intra_op_threads: int | None = None,
        wide_threads: int = 0,
        device: CudaDevice | None = None,
    ) -> None:
        if (provider == "cuda") != (device is not None):
            raise ValueError("a CUDA model needs its CudaDevice, a CPU model none")
        self.path, self.provider, self.max_batch_size = path, provider, max_batch_size
        self.name = path.parent.parent.name
        self._intra_op_threads = intra_op_threads
        self._cuda: CudaSessions | None = None
        self._session: ort.InferenceSession | None = None
        if device is not None:
            self._cuda = CudaSessions(device, self.name, self._open_cuda)
            self._check_io(self._cuda.sessions[0])
        else:
            self._session = self._open(intra_op_threads)
            self._check_io(self._session)
        # A batch alone on a CPU device runs with every core (~28 ms instead of ~50 ms on 2, docs/benchmarks.md).
        wide = provider == "cpu" and wide_threads > 1
        self._wide = self._open(wide_threads, spin_after_run=False) if wide else None

    @property
    def has_wide(self) -> bool:
        return self._wide is not None

    @property
    def cuda(self) -> CudaSessions | None:
        return self._cuda

    def _options(self, intra_op_threads: int | None, *, spin_after_run: bool = True) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads or 1
        options.inter_op_num_threads = 1
        if not spin_after_run:  # spin within a run (-1.2 ms of 20), never after it: idle pool threads
            # would burn ~40 ms of a core after each run, stolen from the one-thread runs.
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3
        return options

    def _open(self, intra_op_threads: int | None, *, spin_after_run: bool = True) -> ort.InferenceSession:
        options = self._options(intra_op_threads, spin_after_run=spin_after_run)
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"cannot load {self.name}: {exc.__class__.__name__}") from None

    def _open_cuda(self, provider_options: dict[str, str], config: dict[str, str]) -> ort.InferenceSession:
        """A session with the CUDA device's choices (service/cuda.py); called on the lane's thread."""
        options = self._options(self._intra_op_threads)
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        providers = [("CUDAExecutionProvider", provider_options), "CPUExecutionProvider"]
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # a CPU retry tells a CUDA problem from a bad file
            raise ProviderUnavailable(f"cannot load {self.name} on CUDA: {exc.__class__.__name__}: {exc}") from None

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

    def run(self, rows: Rows) -> np.ndarray:
        """uint8 [n, 224, 224, 3] (or parts of it) -> float32 probabilities [n, 1000]."""
        return self.run_timed(rows).outputs

    def run_timed(self, rows: Rows) -> BatchRun:
        """`run`, with where the time went."""
        parts = [rows] if isinstance(rows, np.ndarray) else list(rows)
        if self._cuda is not None:
            return BatchRun(*self._cuda.run(parts))
        assert self._session is not None
        started = time.perf_counter()
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return BatchRun(out, compute_s=time.perf_counter() - started)

    def run_wide(self, rows: Rows) -> BatchRun:
        """`run_timed` on the session with intra-op threads = cores: for a batch alone on the device."""
        if self._wide is None:
            return self.run_timed(rows)
        started = time.perf_counter()
        batch = rows if isinstance(rows, np.ndarray) else np.concatenate(list(rows))
        out = self._wide.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return BatchRun(out, compute_s=time.perf_counter() - started)

    def warm_up(self) -> None:
        """Run every batch shape before the service says it is ready (on CUDA: every bucket of every
        lane, capturing its graph)."""
        if self._cuda is not None:
            self._cuda.warm_up()
            return
        for size in sorted({1, self.max_batch_size}):
            self.run(np.zeros((size, *ITEM_SHAPE), np.uint8))
            if self._wide is not None:
                self.run_wide(np.zeros((size, *ITEM_SHAPE), np.uint8))

    def costs(self) -> tuple[float, float]:
        """(fixed seconds per batch, seconds per row) of one run slot, after warm-up: admission's seed."""
        return measure_costs(lambda n: self.run(np.zeros((n, *ITEM_SHAPE), np.uint8)), self.max_batch_size)

