"""loadtest/machine.py: what a benchmark ran on, and where the machine's CPU went during a phase."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import onnxruntime as ort

from loadtest import machine

KNOWN_SIMD = {"avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"}


def _burn(cpu_s: float) -> None:
    # Work until this process has used `cpu_s` of CPU: a bounded amount of work, not a wait.
    target = time.process_time() + cpu_s
    while time.process_time() < target:
        sum(i * i for i in range(1000))


def test_cores_are_those_this_process_may_use() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert machine.cores() == expected >= 1


def test_the_cpu_model_is_the_one_linux_reports() -> None:
    model = machine.cpu_model()
    assert model and isinstance(model, str)
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    if names:
        assert model == names[0]


def test_simd_lists_only_known_flags_the_cpu_has() -> None:
    found = machine.simd()
    if found in ("unknown", "none"):
        return
    flags = set(found.split(", "))
    assert flags <= KNOWN_SIMD
    cpu_flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    assert flags <= set(cpu_flags.split(":", 1)[1].split())


def test_the_commit_is_the_checkouts_head_or_unknown() -> None:
    commit = machine.git_commit()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=machine.REPO_ROOT,
                              capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except OSError:
        head = ""
    assert commit == (head or "unknown")
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{4,40}", commit)


def test_describe_names_the_machine_and_the_software() -> None:
    described = machine.describe()
    assert set(described) == {
        "cpu", "cores", "simd", "memory_gib", "os", "python", "onnxruntime", "date", "commit"
    }
    assert described["cores"] == machine.cores() and described["onnxruntime"] == ort.__version__
    assert isinstance(described["memory_gib"], float) and described["memory_gib"] > 0


def test_busy_cpu_seconds_only_grow() -> None:
    first = machine.busy_cpu_seconds()
    _burn(0.05)
    assert machine.busy_cpu_seconds() >= first > 0


def test_a_watch_without_a_server_counts_our_own_cpu() -> None:
    watch = machine.CpuWatch(server_cpu=None)
    _burn(0.1)
    split = watch.done()
    assert set(split) == {"server_cores", "generator_cores", "other_cores"}
    assert split["server_cores"] == 0.0 and split["generator_cores"] > 0 and split["other_cores"] >= 0


def test_a_watch_counts_the_servers_cpu_since_it_started() -> None:
    readings = iter([100.0, 100.2])  # the server's CPU seconds: when the watch starts, when it is done
    outer = time.perf_counter()
    watch = machine.CpuWatch(server_cpu=lambda: next(readings))
    _burn(0.05)
    split = watch.done()
    outer = time.perf_counter() - outer
    # 0.2 s of server CPU over the watch's wall, which is at most ours and at least our 0.05 s of CPU.
    assert 0.2 / outer <= split["server_cores"] <= 0.2 / 0.05
    assert split["other_cores"] >= 0


def test_busy_cores_is_a_rate() -> None:
    assert machine.busy_cores(0.05) >= 0
