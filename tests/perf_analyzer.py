"""Triton's perf_analyzer for the tests, installed on first use into .cache/perf-analyzer.

perf_analyzer 2.60 wheels need glibc >= 2.38. On an older system (Debian 12 has 2.36) it runs
through Debian 13's loader and C/C++ runtime, unpacked into .cache/perf-analyzer (never installed
into the system); where that cannot be had, the test skips with the reason.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PERF_ANALYZER = "2.60.0"
CACHE = ROOT / ".cache" / "perf-analyzer"
COMPAT_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")  # what the binary needs beyond glibc 2.36
LIBDIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")


def _glibc() -> tuple[int, ...]:
    name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    return tuple(int(p) for p in version.split(".")) if name == "glibc" else (0,)


def _run(cmd: list[str], **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    if proc.returncode != 0:
        pytest.skip(f"perf_analyzer setup failed: {' '.join(cmd[:4])}...: {proc.stderr.strip()[-400:]}")


def _debian_mirror() -> str:
    """The system's own Debian mirror, so the compat packages come from where apt already goes."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = source.read_text(errors="replace") if source.is_file() else ""
        match = re.search(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def _compat_runtime(root: Path) -> Path:
    """Debian 13's glibc, libstdc++ and libgcc unpacked into `root` with a private apt setup."""
    libdir = root / "usr/lib/x86_64-linux-gnu"
    if (libdir / "ld-linux-x86-64.so.2").exists():
        return libdir
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip(f"glibc {'.'.join(map(str, _glibc()))} < 2.38 and no apt-get to fetch a newer runtime")
    apt, debs = root.parent / "apt", root.parent / "debs"
    for d in (
        apt / "etc/apt.conf.d",
        apt / "etc/preferences.d",
        apt / "etc/sources.list.d",
        apt / "state/lists/partial",
        apt / "cache/archives/partial",
        debs,
    ):
        d.mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "etc/sources.list").write_text(f"deb [signed-by={keyring}] {_debian_mirror()} trixie main\n")
    options = [
        f"-o{k}={v}"
        for k, v in {
            "Dir::Etc": apt / "etc",
            "Dir::State": apt / "state",
            "Dir::Cache": apt / "cache",
            "Dir::State::status": "/var/lib/dpkg/status",
            "Debug::NoLocking": "1",
            "APT::Sandbox::User": "root",
        }.items()
    ]
    _run(["apt-get", *options, "update"])
    _run(["apt-get", *options, "download", *COMPAT_PACKAGES], cwd=debs)
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(staging)])
    staging.rename(root)  # only a complete unpack is ever seen as installed
    return libdir


def install() -> list[str]:
    """The command prefix that runs perf_analyzer here, installing it into .cache on first use."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("perf_analyzer wheels are for x86_64 Linux")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once share one install
        binary = CACHE / PERF_ANALYZER / "perf_analyzer/bin/perf_analyzer"
        if not binary.exists():
            target = CACHE / f"{PERF_ANALYZER}.partial"
            shutil.rmtree(target, ignore_errors=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    "manylinux_2_38_x86_64",
                    "--target",
                    str(target),
                    f"perf-analyzer=={PERF_ANALYZER}",
                ]
            )
            target.rename(CACHE / PERF_ANALYZER)
        binary.chmod(0o755)
        if _glibc() >= (2, 38):
            return [str(binary)]
        libdir = _compat_runtime(CACHE / "compat")
    return [
        str(libdir / "ld-linux-x86-64.so.2"),
        "--library-path",
        ":".join([str(libdir), *LIBDIRS]),
        str(binary),
    ]


def profile(perf_analyzer: list[str], target: str, *args: str) -> dict[int, float]:
    """Run perf_analyzer with short windows; its throughput at each concurrency level."""
    # Tests do not judge performance, and other work shares these cores: a loose stability
    # criterion keeps perf_analyzer from giving up on a level (it then skips the higher ones).
    cmd = [*perf_analyzer, "-u", target, "--measurement-interval", "1000"]
    cmd += ["--stability-percentage", "1000", "--max-trials", "5", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    report = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    found = re.findall(r"^Concurrency: (\d+), throughput: ([\d.]+) infer/sec", proc.stdout, re.M)
    throughput = {int(c): float(t) for c, t in found}
    assert throughput and all(t > 0 for t in throughput.values()), report
    return throughput
