"""GPU memory of one process over time, read from NVML ten times a second in a background thread:
the peak of each named phase (start-up, warm-up, each mode). Where NVML sees no GPU every figure
is None, so the same code runs on a CPU machine."""

from __future__ import annotations

import threading
from typing import Any

from service import gpu


class MemoryWatch:
    """`with MemoryWatch(pid) as watch: watch.phase("10x7"); ...; watch.peaks` -> MiB per phase."""

    def __init__(self, pid: int, *, device: int = 0, every_s: float = 0.1) -> None:
        self.pid, self.device, self.every_s = pid, device, every_s
        self.peaks: dict[str, float | None] = {}
        self._phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory-watch", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def phase(self, name: str) -> None:
        """From now on samples count towards `name` (and one is taken at once)."""
        self._phase = name
        self._take()

    def now_mib(self) -> float | None:
        held = gpu.process_memory_bytes(self.pid, self.device)
        return None if held is None else held / 2**20

    def _take(self) -> None:
        mib = self.now_mib()
        phase = self._phase
        if mib is None:
            self.peaks.setdefault(phase, None)
        else:
            self.peaks[phase] = max(self.peaks.get(phase) or 0.0, mib)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._take()

    def summary(self) -> dict[str, Any]:
        """Peaks per phase, the overall peak, and the spread of the mode phases' peaks (max / min)."""
        known = {k: v for k, v in self.peaks.items() if v is not None}
        modes = [v for k, v in known.items() if k.startswith("mode ")]
        return {
            "peaks_mib": dict(self.peaks),
            "peak_mib": max(known.values()) if known else None,
            "modes_spread": (max(modes) / min(modes)) if modes else None,
        }
