"""The machine a benchmark ran on, and where its CPU went during a phase: the server, the load
generator, and everything else (other processes on a shared box skew a 2-core benchmark)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags) or "none"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def describe() -> dict[str, str | int | float]:
    return {
        "cpu": cpu_model(), "cores": cores(), "simd": simd(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(terse=True), "python": platform.python_version(),
        "onnxruntime": ort.__version__, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": git_commit(),
    }


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent not idle, since boot."""
    t = psutil.cpu_times()
    return sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq", "steal") if hasattr(t, f))


@dataclass
class CpuWatch:
    """Started before a phase; `done()` splits the machine's busy CPU into server, us, and the rest."""

    server_cpu: Callable[[], float] | None  # the server's CPU seconds so far (None: no server)
    wall0: float = 0.0
    busy0: float = 0.0
    server0: float = 0.0
    self0: float = 0.0

    def __post_init__(self) -> None:
        self.wall0, self.busy0, self.self0 = time.perf_counter(), busy_cpu_seconds(), time.process_time()
        self.server0 = self.server_cpu() if self.server_cpu else 0.0

    def done(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self.wall0, 1e-9)
        server = (self.server_cpu() - self.server0) if self.server_cpu else 0.0
        own = time.process_time() - self.self0
        busy = busy_cpu_seconds() - self.busy0
        return {"server_cores": server / wall, "generator_cores": own / wall,
                "other_cores": max(busy - server - own, 0.0) / wall}


def busy_cores(sample_s: float = 2.0) -> float:
    """Cores the machine keeps busy over `sample_s` while we wait: other work, which a benchmark wants ~0."""
    busy0 = busy_cpu_seconds()
    time.sleep(sample_s)
    return (busy_cpu_seconds() - busy0) / sample_s
