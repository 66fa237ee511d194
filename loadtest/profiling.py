"""Where a server's time goes: py-spy samples the running process (no restart, no code change) and
the stacks are folded into a few buckets: model, preprocessing, event loop + HTTP, other."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# First matching rule wins; a stack is tested leaf first, so the innermost known frame decides.
_BUCKETS = (
    ("model (ONNX Runtime)", ("Session.run", "run_with_iobinding")),
    ("preprocessing (decode, resize, crop)", ("service/preprocess.py", "PIL/", "preprocess (")),
    ("batching", ("service/batching/",)),
)


def py_spy() -> str | None:
    """The py-spy binary of this environment, else one on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, duration_s: float, output: Path, *, rate: int = 100) -> Path | None:
    """Sample `pid` for `duration_s` into a folded-stacks file; None when py-spy is unavailable or fails."""
    binary = py_spy()
    if binary is None:
        return None
    command = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))),
               "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(output)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output if done.returncode == 0 and output.exists() else None


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in _BUCKETS:
            if any(n in frame for n in needles):
                return name
    if frames and frames[0].startswith("_run_module_as_main"):
        return "event loop + HTTP (main thread)"
    return "other threads"


def summarize(folded: Path, *, rate: int, duration_s: float) -> dict[str, object]:
    """Cores spent per bucket (samples / rate / duration) and the busiest leaf functions."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        buckets[bucket_of(frames)] += int(count)
        leaves[frames[-1]] += int(count)
    per_core = rate * duration_s
    return {
        "cores": {k: v / per_core for k, v in buckets.most_common()},
        "top_functions": [(name, n / per_core) for name, n in leaves.most_common(8)],
    }
