"""Shared fixtures: tiny model repositories, test images, and the real server on a loopback port."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from loadtest.servers import ServerProcess
from service.app import create_app
from service.settings import Settings
from tests.tiny_models import write_repository

# Many servers start in one run, some as child processes: gRPC is off unless a test asks for a port
# (serve(..., grpc_port=free_port())); a fixed 8001 would collide between servers.
os.environ.setdefault("GOOGLENET_GRPC_PORT", "0")
ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
T = TypeVar("T")
SAMPLES = SHARED_DATA / "imagenet-samples"


def wait_ready(url: str, proc: subprocess.Popen, *, timeout_s: float = 60, log: Path | None = None) -> None:
    """Poll `url` until it answers 200 (start-up loads and warms models): bounded by `timeout_s`, and
    failing at once if `proc` exits; `log` is the process's output, shown when it fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {timeout_s:g} s"
            pytest.fail(f"{url}: {why}\n{log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def sample_jpegs() -> list[Path]:
    """The real ImageNet JPEGs beside the project, or a clean skip where they are absent."""
    files = sorted(SAMPLES.glob("*.JPEG")) if SAMPLES.is_dir() else []
    if not files:
        pytest.skip("../shared/data/imagenet-samples is not present")
    return files


def make_image(width: int = 320, height: int = 240, *, fmt: str = "JPEG", seed: int = 0, high: int = 200) -> bytes:
    """A generated picture (smooth gradients plus noise) encoded as `fmt`; values stay below `high`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base * high / 255 + rng.normal(0, 8, base.shape), 0, high - 1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repository(tmp_path_factory.mktemp("repo") / "model_repository", members=3)


class LiveServer:
    """The real app under uvicorn in a background thread, on an ephemeral 127.0.0.1 port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.grpc_target = f"127.0.0.1:{settings.grpc_port}"  # where a gRPC client connects, when it is on
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.server.serve(sockets=[self.sock]),), daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:  # start-up loads and warms the models: bounded wait
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.loop.close()

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def on_loop(self, fn: Callable[..., T], *args: object) -> T:
        """Call `fn(*args)` on the server's event loop (the batchers' state belongs to it)."""

        async def call() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)


def serve(repo: Path, **overrides: object) -> LiveServer:
    settings = Settings(model_repository=repo, providers="cpu", **overrides)
    return LiveServer(settings)


@pytest.fixture(scope="session")
def perf_analyzer() -> list[str]:
    """The command prefix that runs Triton's perf_analyzer here (tests/perf_analyzer.py)."""
    from tests import perf_analyzer as installer

    return installer.install()


@pytest.fixture(scope="module")
def server(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_batch_size=8, instances=2) as live:
        yield live


def onnx_probabilities(repo: Path, members: list[str], rows: np.ndarray) -> np.ndarray:
    """What ONNX Runtime alone says on `rows` (uint8 crops), averaged over `members` per row."""
    outputs = [
        ort.InferenceSession(str(repo / m / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        .run(["probabilities"], {"image": rows})[0]
        .astype(np.float64)
        for m in members
    ]
    return np.mean(outputs, axis=0)


_scraper: list[httpx.Client] = []  # one client for every scrape: a new one costs an SSL context each time


@pytest.fixture(scope="session", autouse=True)
def _close_scraper() -> Iterator[None]:
    yield
    for client in _scraper:
        client.close()


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (those matching `labels`) on the live server's /metrics."""
    if not _scraper:
        _scraper.append(httpx.Client(timeout=10))
    total = 0.0
    for family in text_string_to_metric_families(_scraper[0].get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@contextmanager
def service_process(repo: Path, *flags: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real `python -m service` on a free 127.0.0.1 port (loadtest/servers.py, the one launcher):
    (its URL, its process); stopped after."""
    args = ["--model-repository", str(repo), "--providers", "cpu", "--log-level", "warning", *flags]
    with ServerProcess("service", args, log=log, cwd=ROOT) as server:
        assert server.process is not None
        yield server.url, server.process


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes: what a transient bomb leaves."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def classify_count(url: str) -> tuple[float, float]:
    """(classify requests answered, requests in flight minus this scrape) from the service's own metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    answered = inflight = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "googlenet_requests_total" and s.labels["route"] == "/v1/classify":
                answered += s.value
            elif s.name == "googlenet_inflight_requests":
                inflight = s.value - 1
    return answered, inflight
