"""Fuzzing in CI, bounded: each atheris target of fuzz/ for a few seconds (coverage-guided, libFuzzer),
and hypothesis mutating valid images of every format through the decode path. No input may end in
anything but an answer or the service's own 4xx error. Longer runs: docs/reliability.md, "Fuzzing"."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import ServiceError
from service.preprocess import preprocess
from tests.conftest import ROOT, make_image
from tests.reliability import hostile

SECONDS_PER_TARGET = 5
TARGETS = ["decode", "multipart", "v2_body", "grpc_request"]


@pytest.fixture(scope="module")
def fuzz_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, list[str]]]:
    """Run every target at once (each is one process): target -> (exit code, libFuzzer's output, crash files)."""
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform (pip install atheris)")
    # libFuzzer's RSS limit reads the peak RSS (ru_maxrss), which Linux carries across fork and exec: a
    # child of this pytest process starts at pytest's own peak, so the 2 GiB budget is on top of it.
    rss_limit_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 2048
    procs = {}
    for target in TARGETS:
        work = tmp_path_factory.mktemp(target)
        args = [sys.executable, "-m", f"fuzz.{target}", str(work / "corpus"), f"-max_total_time={SECONDS_PER_TARGET}",
                "-runs=1000000", f"-rss_limit_mb={rss_limit_mb}", f"-artifact_prefix={work}/", "-print_final_stats=1"]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs[target] = (work, proc)
    runs = {}
    for target, (work, proc) in procs.items():
        _, err = proc.communicate(timeout=SECONDS_PER_TARGET + 120)
        crashes = sorted(p.name for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
        runs[target] = (proc.returncode, err, crashes)
    return runs


@pytest.mark.parametrize("target", TARGETS)
def test_atheris_target_runs_clean(fuzz_runs: dict[str, tuple[int, str, list[str]]], target: str) -> None:
    code, output, crashes = fuzz_runs[target]
    assert code == 0 and not crashes, (crashes, output[-3000:])
    assert "Done" in output and "stat::number_of_executed_units" in output


SEEDS = [make_image(96, 64, fmt=f) for f in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")] + [
    hostile.cmyk_jpeg(), hostile.png_16bit(), hostile.exif_rotated("JPEG")[0], hostile.animated("GIF")[0]]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 512))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[at:at + 4] = b"\xff\xff\xff\xff"  # sizes and lengths at their largest
        if not data:
            break
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_images(), crops=st.sampled_from([1, 10]))
def test_mutated_images_decode_or_get_a_4xx(data: bytes, crops: int) -> None:
    try:
        rows = preprocess(data, crops, max_pixels=4_000_000)
    except ServiceError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert rows.shape == (crops, 224, 224, 3) and rows.dtype.name == "uint8"
