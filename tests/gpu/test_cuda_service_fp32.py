"""The service on CUDA in fp32: the same answers as the CPU provider, to float rounding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.reference import Reference
from loadtest.servers import ServerProcess
from tests.gpu.conftest import assert_answers_match_the_cpu, start

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def fp32(gpu_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start(gpu_repository, "--precision", "fp32", log=tmp_path_factory.mktemp("fp32") / "server.log") as server:
        yield server


def test_fp32_answers_match_the_cpu_provider_in_every_mode(
    fp32: ServerProcess, gpu_repository: Path, reference: Reference, jpegs: list[bytes]
) -> None:
    assert_answers_match_the_cpu(fp32, reference, gpu_repository, jpegs, tolerance=1e-5)
