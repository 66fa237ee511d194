"""The service on CUDA with a GPU user's defaults (fp16, CUDA graphs): it says it runs on CUDA, its
answers match the CPU provider's fp32 in every mode, an idle device absorbs a burst, and its device
memory stays flat from the first mode to the last."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from loadtest.burst import burst
from loadtest.device_memory import MemoryWatch
from loadtest.reference import Reference
from loadtest.servers import ServerProcess
from tests.gpu.conftest import assert_answers_match_the_cpu, modes

pytestmark = pytest.mark.gpu


def test_the_service_says_it_serves_on_cuda_in_fp16(fp16: ServerProcess) -> None:
    models = httpx.get(fp16.url + "/v1/models").json()
    assert models["provider"] == "cuda" and {m["precision"] for m in models["members"]} == {"fp16"}
    assert 'provider="cuda"' in httpx.get(fp16.url + "/metrics").text


def test_fp16_answers_match_the_cpu_provider_in_every_mode(
    fp16: ServerProcess, gpu_repository: Path, reference: Reference, jpegs: list[bytes]
) -> None:
    assert_answers_match_the_cpu(fp16, reference, gpu_repository, jpegs, tolerance=2e-3)


def test_a_burst_of_256_light_requests_on_the_idle_device_is_neither_shed_nor_failed(
    fp16: ServerProcess, gpu_repository: Path, jpegs: list[bytes]
) -> None:
    light = [m for m in modes(gpu_repository) if m.startswith("1x") or m == "10x1"]
    result = burst(fp16.url, jpegs, light, 256)
    assert result["ok"] == 256, result["statuses"]


def test_device_memory_is_flat_from_the_first_mode_to_the_last(
    fp16: ServerProcess, gpu_repository: Path, jpegs: list[bytes]
) -> None:
    def load(mode: str) -> None:  # each client 3 requests: every lane busy with this mode's batches
        crops, models = mode.split("x")
        with httpx.Client(base_url=fp16.url, timeout=120) as client:
            for image in jpegs:
                answer = client.post("/v1/classify", params={"crops": crops, "models": models}, content=image,
                                     headers={"content-type": "image/jpeg"})
                assert answer.status_code == 200, answer.text

    with MemoryWatch(fp16.pid) as memory, concurrent.futures.ThreadPoolExecutor(8) as clients:
        memory.phase("ready")
        for mode in modes(gpu_repository):
            memory.phase(f"mode {mode}")
            # 8 clients; 2 for 144 crops, whose 1,008-row requests would otherwise wait past max_queue_wait_ms
            list(clients.map(load, [mode] * (2 if mode.startswith("144x") else 8)))
        memory.phase("end")
    summary = memory.summary()
    assert summary["peak_mib"] is not None, "NVML does not see the service's process"
    assert summary["modes_spread"] <= 1.05, summary
