"""The GPU tests (`pytest -m gpu`): skipped, with the reason, where the CUDA provider cannot start.

They use the repository named by GOOGLENET_GPU_TEST_REPOSITORY, else ./model_repository, else a
two-member one built here with model_export (fp32 + fp16). One GPU service runs at a time: each
module starts its own and stops it before the next module begins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.reference import Reference, compare
from loadtest.servers import ServerProcess
from service.repository import load_repository
from service.runtime import ModelLoadError, choose_provider
from tests.conftest import ROOT, sample_jpegs

MODES = ("1x1", "10x1", "144x1", "1x7", "10x7", "144x7")


def modes(repository: Path) -> list[str]:
    """The paper's modes, the ensemble ones with every member the repository has."""
    members = len(load_repository(repository, precision="fp32").members)
    return [m.replace("x7", f"x{members}") for m in MODES if members > 1 or not m.endswith("x7")]


@pytest.fixture(scope="session")
def cuda() -> None:
    try:
        if choose_provider("cuda") == "cuda":
            return
    except ModelLoadError as exc:
        pytest.skip(f"the CUDA provider cannot start here: {exc}")


@pytest.fixture(scope="session")
def gpu_repository(cuda: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("GOOGLENET_GPU_TEST_REPOSITORY")
    if named:
        return Path(named)
    if (ROOT / "model_repository" / "ensemble.json").exists():
        return ROOT / "model_repository"
    out = tmp_path_factory.mktemp("gpu") / "repository"
    subprocess.run([sys.executable, "-m", "model_export", "build-repository", "--output", str(out), "--members", "2"],
                   check=True, timeout=600)
    return out


def assert_answers_match_the_cpu(
    server: ServerProcess, reference: Reference, repository: Path, jpegs: list[bytes], tolerance: float
) -> None:
    """Every mode's whole distributions within `tolerance` of the CPU provider's fp32, top-1 equal
    where the CPU's margin is clear (loadtest/reference.py)."""
    report = compare(server.url, reference, jpegs, modes(repository), tolerance=tolerance)
    for mode, row in report.items():
        assert row["errors"] == 0 and row["max_abs"] <= tolerance, (mode, row)
        assert row["top1_agree"] == row["top1_clear"], (mode, row)


@pytest.fixture(scope="session")
def reference(gpu_repository: Path) -> Reference:
    """The CPU provider's fp32 answers, computed once for every module that compares with them."""
    return Reference(gpu_repository)


@pytest.fixture(scope="session")
def jpegs() -> list[bytes]:
    return [p.read_bytes() for p in sample_jpegs()[:3]]


def start(repository: Path, *flags: str, log: Path) -> ServerProcess:
    return ServerProcess("service", ["--model-repository", str(repository), "--providers", "cuda", *flags], log=log)


@pytest.fixture(scope="module")
def fp16(gpu_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The service as a GPU user starts it: defaults (fp16, CUDA graphs)."""
    with start(gpu_repository, log=tmp_path_factory.mktemp("fp16") / "server.log") as server:
        yield server
