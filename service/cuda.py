"""The CUDA device: lanes, one memory arena, batch-size buckets with fixed buffers, CUDA graphs.

- **Lanes.** A lane is one thread that owns one session of every model and runs one batch at a
  time. ONNX Runtime keeps a session's cuDNN/cuBLAS handles and captured graphs per thread, so a
  session always runs on the thread that warmed it; the batching device's run slots are the lanes.
- **One arena.** Each session's own arena grows to its largest batch and keeps it: the 14 sessions
  of a 7-model service on 2 lanes held 78 GB of an H200. One arena registered with ONNX Runtime's
  environment (`create_and_register_allocator_v2`, `session.use_env_allocators`) holds only the
  peak of the runs in flight, and `memory_limit_bytes` bounds it.
- **Buckets.** Batches are padded to a power of two (and the max), so each session sees a few
  shapes; a lane's host staging and device buffers per bucket are shared by its sessions.
- **Graphs.** A bucket is captured at warm-up on its lane's thread, after two plain runs of the
  same shape sized the arena and chose the cuDNN algorithms, under the device lock (a capture is
  invalidated by any other thread's CUDA call). A capture that fails or replays differently
  leaves that bucket to plain runs, counted and logged. Graphs replay at the addresses they were
  captured at, and in one shared arena two sessions may have been captured at the same, since
  freed, addresses: with graphs on, runs take the device one at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import onnxruntime as ort

from service import metrics
from service.contract import CLASSES, ITEM_SHAPE

log = logging.getLogger(__name__)
T = TypeVar("T")
ConvAlgoSearch = Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"]
NO_GRAPH = "-1"  # gpu_graph_id of a run that neither captures nor replays
# (CUDA provider options, session config entries) -> a session: the model's own opener.
OpenSession = Callable[[dict[str, str], dict[str, str]], ort.InferenceSession]


def batch_buckets(max_batch_size: int) -> list[int]:
    """Batch sizes a CUDA session is specialised for: powers of two up to, and including, the max."""
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i < max_batch_size]
    return [*sizes, max_batch_size]


@dataclass(frozen=True)
class CudaConfig:
    device_id: int = 0
    lanes: int = 2
    memory_limit_bytes: int = 6 << 30
    graphs: bool = True
    # HEURISTIC: cuDNN's first choice per shape, no timed search at warm-up (docs/benchmarks.md).
    conv_algo_search: ConvAlgoSearch = "HEURISTIC"


_arena_lock = threading.Lock()
_arenas: dict[int, int] = {}  # device id -> bytes of the arena registered in this process


def register_arena(device_id: int, limit_bytes: int) -> bool:
    """Register the process's one CUDA arena on `device_id`, bounded by `limit_bytes`; False when
    ONNX Runtime refuses it (sessions then keep arenas of their own, each bounded)."""
    with _arena_lock:
        if device_id in _arenas:
            if _arenas[device_id] != limit_bytes:
                log.warning("the CUDA arena of device %d is already registered with %d bytes; keeping it",
                            device_id, _arenas[device_id])
            return True
        memory = ort.OrtMemoryInfo("Cuda", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, device_id, ort.OrtMemType.DEFAULT)
        # kSameAsRequested (1): grow by what a run asks, never to the next power of two.
        arena = ort.OrtArenaCfg({"max_mem": limit_bytes, "arena_extend_strategy": 1})
        try:
            ort.create_and_register_allocator_v2(
                "CUDAExecutionProvider", memory, {"device_id": str(device_id)}, arena
            )
        except Exception as exc:  # an ONNX Runtime build without it: per-session arenas
            log.warning("one CUDA arena for every session was refused (%s); each session gets its own", exc)
            return False
        _arenas[device_id] = limit_bytes
        return True


@dataclass
class Lane:
    """One thread and the buffers of each bucket: host staging, device input and output."""

    index: int
    thread: ThreadPoolExecutor
    staging: dict[int, np.ndarray] = field(default_factory=dict)
    inputs: dict[int, ort.OrtValue] = field(default_factory=dict)
    outputs: dict[int, ort.OrtValue] = field(default_factory=dict)


class CudaDevice:
    """The lanes of one GPU, shared by every model's sessions (service/runtime.py)."""

    def __init__(self, config: CudaConfig, *, max_batch_size: int, models: int = 1) -> None:
        self.config = config
        self.buckets = batch_buckets(max_batch_size)
        self.shared_arena = register_arena(config.device_id, config.memory_limit_bytes)
        # Without the shared arena each session is bounded by its share of the limit.
        self.session_limit_bytes = config.memory_limit_bytes // max(1, config.lanes * models)
        self.lock = threading.Lock()  # captures, and every run while graphs are on (module docstring)
        # Graphs in one shared arena may overlap: then runs take the device one at a time.
        self.serialised = config.graphs and self.shared_arena
        self._local = threading.local()
        self.lanes = [self._open_lane(i) for i in range(config.lanes)]
        self._idle: queue.SimpleQueue[Lane] = queue.SimpleQueue()  # for callers that are not on a lane
        for lane in self.lanes:
            self._idle.put(lane)

    def _open_lane(self, index: int) -> Lane:
        def mark() -> None:
            self._local.lane = index

        thread = ThreadPoolExecutor(1, thread_name_prefix=f"cuda-lane-{index}", initializer=mark)
        lane = Lane(index, thread)
        for size in self.buckets:  # allocated on the lane's thread, before any capture
            lane.staging[size] = np.zeros((size, *ITEM_SHAPE), np.uint8)
            lane.inputs[size], lane.outputs[size] = self.on(lane, self._buffers, size)
        return lane

    def _buffers(self, size: int) -> tuple[ort.OrtValue, ort.OrtValue]:
        device = self.config.device_id
        x = ort.OrtValue.ortvalue_from_shape_and_type((size, *ITEM_SHAPE), np.uint8, "cuda", device)
        y = ort.OrtValue.ortvalue_from_shape_and_type((size, CLASSES), np.float32, "cuda", device)
        return x, y

    @property
    def executors(self) -> list[ThreadPoolExecutor]:
        """The lanes' threads, in lane order: the batching device's run slots."""
        return [lane.thread for lane in self.lanes]

    def current(self) -> Lane | None:
        index = getattr(self._local, "lane", None)
        return None if index is None else self.lanes[index]

    def on(self, lane: Lane, fn: Callable[..., T], *args: object) -> T:
        """Call `fn` on `lane`'s thread (directly when already there) and return its result."""
        if self.current() is lane:
            return fn(*args)
        return lane.thread.submit(fn, *args).result()

    def borrow(self) -> Lane:
        """An idle lane for a caller that is not on one (a benchmark's own threads); `give_back` it."""
        return self._idle.get()

    def give_back(self, lane: Lane) -> None:
        self._idle.put(lane)

    def bucket(self, rows: int) -> int:
        return next((b for b in self.buckets if b >= rows), rows)

    def provider_options(self, *, graphs: bool) -> dict[str, str]:
        options = {
            "device_id": str(self.config.device_id),
            "prefer_nhwc": "1",  # fp16 NHWC kernels: 24.3k img/s against 17.3k (docs/benchmarks.md)
            "cudnn_conv_algo_search": self.config.conv_algo_search,
            # A search may otherwise ask for all free memory as workspace, past the arena's bound.
            "cudnn_conv_use_max_workspace": "0",
            "arena_extend_strategy": "kSameAsRequested",
            "enable_cuda_graph": "1" if graphs else "0",
        }
        if not self.shared_arena:
            options["gpu_mem_limit"] = str(self.session_limit_bytes)
        return options

    def session_config(self) -> dict[str, str]:
        config = {"session.record_ep_graph_assignment_info": "1"}
        if self.shared_arena:
            config["session.use_env_allocators"] = "1"
        return config

    def close(self) -> None:
        for lane in self.lanes:
            lane.thread.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Bound:
    binding: ort.IOBinding
    options: ort.RunOptions
    graph: bool  # replays a captured graph; else plain runs


class CudaSessions:
    """One model on a CudaDevice: a session per lane and, per (lane, bucket), its IO binding."""

    def __init__(self, device: CudaDevice, name: str, open_session: OpenSession) -> None:
        self.device, self.name, self._open = device, name, open_session
        self.sessions = [self._open_on(lane, graphs=device.config.graphs) for lane in device.lanes]
        self._bound: dict[tuple[int, int], _Bound] = {}
        self._plain_lanes: set[int] = set()  # lanes whose session was opened again without graphs
        for lane in device.lanes:
            self._bind(lane)

    def _open_on(self, lane: Lane, *, graphs: bool) -> ort.InferenceSession:
        device = self.device
        try:
            return device.on(lane, self._open, device.provider_options(graphs=graphs), device.session_config())
        except Exception as exc:
            if not device.shared_arena:
                raise
            log.warning("a session on the shared CUDA arena failed (%s); sessions get arenas of their own", exc)
            device.shared_arena = False  # each bounded by its share of the limit from now on
            return device.on(lane, self._open, device.provider_options(graphs=graphs), device.session_config())

    def _bind(self, lane: Lane) -> None:
        session = self.sessions[lane.index]
        for size in self.device.buckets:
            binding = session.io_binding()
            binding.bind_ortvalue_input(session.get_inputs()[0].name, lane.inputs[size])
            binding.bind_ortvalue_output(session.get_outputs()[0].name, lane.outputs[size])
            self._bound[lane.index, size] = _Bound(binding, _run_options(NO_GRAPH), graph=False)

    def placement(self) -> dict[str, int]:
        """Nodes per execution provider in the first session (every node on CUDA is what graphs need)."""
        counts: dict[str, int] = {}
        for subgraph in self.sessions[0].get_provider_graph_assignment_info():
            counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
        return counts

    def run(self, parts: Sequence[np.ndarray]) -> tuple[np.ndarray, float, float, float]:
        """Rows (the concatenation of `parts`) -> (probabilities, copy-in s, compute s, copy-out s),
        on the caller's lane, or on a borrowed one for a caller that is not on a lane."""
        lane = self.device.current()
        if lane is not None:
            return self._run_on(lane, parts)
        lane = self.device.borrow()
        try:
            return self.device.on(lane, self._run_on, lane, parts)
        finally:
            self.device.give_back(lane)

    def _run_on(
        self, lane: Lane, parts: Sequence[np.ndarray], options: ort.RunOptions | None = None
    ) -> tuple[np.ndarray, float, float, float]:
        started = time.perf_counter()
        n = sum(len(p) for p in parts)
        size = self.device.bucket(n)
        if size > self.device.buckets[-1]:
            raise ValueError(f"{n} rows is more than the largest batch, {self.device.buckets[-1]}")
        staging, offset = lane.staging[size], 0
        for part in parts:  # padding rows keep whatever they held: rows never mix in inference
            staging[offset : offset + len(part)] = part
            offset += len(part)
        lane.inputs[size].update_inplace(staging)
        copied = time.perf_counter()
        bound = self._bound[lane.index, size]
        session, options = self.sessions[lane.index], options or bound.options
        if self.device.serialised:
            with self.device.lock:
                session.run_with_iobinding(bound.binding, options)
        else:
            session.run_with_iobinding(bound.binding, options)
        computed = time.perf_counter()
        out = lane.outputs[size].numpy()[:n]
        return out, copied - started, computed - copied, time.perf_counter() - computed

    def warm_up(self) -> None:
        """Run every bucket on every lane (capturing its graph where graphs are on), one lane at a time."""
        for lane in self.device.lanes:
            self.device.on(lane, self._warm_lane, lane)

    def _warm_lane(self, lane: Lane) -> None:
        rng = np.random.default_rng(lane.index)
        for size in self.device.buckets:
            probe = rng.integers(0, 256, (size, *ITEM_SHAPE), dtype=np.uint8)
            plain = [self._run_on(lane, [probe])[0].copy() for _ in range(2)][-1]  # sizes the arena first
            if self.device.config.graphs and lane.index not in self._plain_lanes:
                self._capture(lane, size, probe, plain, rng)

    def _capture(self, lane: Lane, size: int, probe: np.ndarray, plain: np.ndarray, rng: np.random.Generator) -> None:
        bound, graph = self._bound[lane.index, size], _run_options(str(size))
        try:
            with self.device.lock:
                # Two plain runs with this id, then the capture (ONNX Runtime counts runs per id).
                for _ in range(3):
                    self.sessions[lane.index].run_with_iobinding(bound.binding, graph)
            first = self._run_on(lane, [probe], graph)[0]
            other = rng.integers(0, 256, probe.shape, dtype=np.uint8)  # the replay must read the new input
            second = self._run_on(lane, [other], graph)[0].copy()
            expected = self._run_on(lane, [other], _run_options(NO_GRAPH))[0]
            worst = max(np.abs(first - plain).max(), np.abs(second - expected).max())
            if worst > 1e-3:
                raise RuntimeError(f"its replay differs from a plain run by {worst:.2g}")
            bound.options, bound.graph = graph, True
        except Exception as exc:  # served without a graph: never a reason not to start
            metrics.CUDA_GRAPH_FALLBACKS.labels(self.name).inc()
            log.warning("CUDA graph of %s, batch %d, lane %d not used: %s", self.name, size, lane.index, exc)
            self._check_plain(lane, size, probe, plain)

    def _check_plain(self, lane: Lane, size: int, probe: np.ndarray, plain: np.ndarray) -> None:
        """After a failed capture the session must still answer right, else it is opened again without graphs."""
        try:
            if np.allclose(self._run_on(lane, [probe])[0], plain, atol=1e-3):
                return
            why = "it answers differently"
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        log.warning("the session of %s on lane %d is opened again without CUDA graphs: %s", self.name, lane.index, why)
        self.sessions[lane.index] = self._open_on(lane, graphs=False)
        self._plain_lanes.add(lane.index)
        self._bind(lane)
        for other in self.device.buckets:  # the reopened session captures nothing: two plain runs warm each shape
            for _ in range(2):
                self._run_on(lane, [np.zeros((other, *ITEM_SHAPE), np.uint8)])

    def graph_buckets(self) -> int:
        """(lane, bucket) pairs that replay a captured graph."""
        return sum(bound.graph for bound in self._bound.values())


def _run_options(graph_id: str) -> ort.RunOptions:
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", graph_id)
    return options
