"""SIGTERM under load, on the real `python -m service` process: readiness false first, every accepted
request answered 200, exit 0 within the grace period (service/lifecycle.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import uvicorn
from tritonclient.grpc import service_pb2, service_pb2_grpc

from loadtest.servers import free_port
from service.app import mark_closing
from service.lifecycle import GracefulServer
from tests.conftest import ROOT, classify_count, make_image, serve, wait_ready

DELAY_S, GRACE_S = 3.0, 30.0
LOAD = 6  # concurrent 144-crop x 3-model requests: 432 batches of 2 rows each, one at a time


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def service(tiny_repo: Path, tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    log = tmp_path / "service.log"
    args = [
        sys.executable,
        "-m",
        "service",
        "--model-repository",
        str(tiny_repo),
        "--port",
        str(port),
        "--providers",
        "cpu",
        "--max-batch-size",
        "2",
        "--instances",
        "1",
        "--max-queue-rows",  # room for all LOAD requests (864 rows): this test is about shutdown, not admission
        "1024",
        "--max-queue-wait-ms",  # and time for them, however slow the host
        "600000",
        "--log-level",
        "info",
        "--shutdown-delay-s",
        str(DELAY_S),
        "--shutdown-grace-s",
        str(GRACE_S),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", proc, log=log)
        yield Process(proc, url, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_under_load_answers_every_accepted_request_then_exits_zero(service: Process) -> None:
    image = make_image()
    with (
        httpx.Client(
            base_url=service.url, timeout=60, limits=httpx.Limits(max_connections=LOAD + 4)
        ) as client,
        concurrent.futures.ThreadPoolExecutor(LOAD + 1) as pool,
    ):

        def classify() -> httpx.Response:
            return client.post(
                "/v1/classify",
                params={"crops": 144, "models": 3},
                content=image,
                headers={"content-type": "image/jpeg"},
            )

        futures = [pool.submit(classify) for _ in range(LOAD)]
        deadline = time.monotonic() + 30
        while True:  # every request accepted, and some still being served: now the signal counts
            answered, inflight = classify_count(service.url)
            assert inflight > 0 or answered < LOAD, "the load finished before the signal: make it heavier"
            if answered + inflight >= LOAD:
                break
            assert time.monotonic() < deadline, "the requests were not all accepted"
        service.proc.send_signal(signal.SIGTERM)

        # readiness goes false first, while the listener still serves (shutdown_delay_s)
        ready = httpx.get(f"{service.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
        late = pool.submit(classify)  # sent during the delay: accepted, so it must be answered too
        while sum(classify_count(service.url)) < LOAD + 1:  # bounded wait; `late` answering 200 is the check
            assert time.monotonic() < deadline + GRACE_S, "the late request was never accepted"

        responses = [f.result(timeout=GRACE_S + DELAY_S) for f in [*futures, late]]
    assert [r.status_code for r in responses] == [200] * (LOAD + 1)
    assert all(r.json()["evaluations"] == 432 for r in responses)

    # A generous bound wait, not a speed verdict: the exit itself is what is checked.
    code = service.proc.wait(timeout=2 * (DELAY_S + GRACE_S))
    log = service.log.read_text()
    assert code == 0, log
    assert "not ready; closing the listener" in log and "Traceback" not in log
    with pytest.raises(httpx.ConnectError):  # and it is gone: nothing listens any more
        httpx.get(f"{service.url}/healthz", timeout=2)


def test_second_signal_forces_exit(service: Process) -> None:
    service.proc.send_signal(signal.SIGTERM)
    assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 503
    service.proc.send_signal(signal.SIGTERM)  # impatient operator: do not wait out the delay
    assert service.proc.wait(timeout=DELAY_S + GRACE_S) == 0
    assert "second SIGTERM: forcing exit" in service.log.read_text()


def test_the_uvicorn_hooks_it_overrides_keep_their_shape() -> None:
    """GracefulServer overrides four uvicorn.Server methods; an upgrade that renames, re-signs or
    stops calling them fails here instead of silently losing the drain."""
    shapes = {"capture_signals": ["self"], "handle_exit": ["self", "sig", "frame"], "on_tick": ["self", "counter"],
              "shutdown": ["self", "sockets"]}
    for name, params in shapes.items():
        assert list(inspect.signature(getattr(uvicorn.Server, name)).parameters) == params, name
    source = inspect.getsource(uvicorn.Server)
    assert "with self.capture_signals():" in source and "await self.on_tick(counter)" in source
    assert "await self.shutdown(sockets=sockets)" in source
    for flag in ("should_exit", "force_exit", "started"):
        assert f"self.{flag}" in source, flag


def test_a_signal_marks_draining_and_a_second_forces_exit_in_process() -> None:
    drained: list[bool] = []
    server = GracefulServer(uvicorn.Config(app=None), delay_s=0.0, on_draining=lambda: drained.append(True))
    server.handle_exit(signal.SIGTERM, None)
    assert drained == [True] and server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGTERM, None)
    assert server.force_exit and drained == [True]


def test_the_listener_closing_stops_grpc_too_and_starts_the_one_grace_period(tiny_repo: Path) -> None:
    with serve(tiny_repo, grpc_port=free_port(), shutdown_grace_s=5) as live:
        with grpc.insecure_channel(live.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
            live.on_loop(mark_closing, live.app)
            serving = live.app.state.serving
            assert serving.stop_by is not None and serving.closing.is_set()
            with pytest.raises(grpc.RpcError):  # gRPC takes no new call once the HTTP listener closes
                for _ in range(50):  # the stop is a task on the server's loop: bounded retries
                    stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=2)
                    live.on_loop(lambda: None)


def test_graceful_server_calls_on_closing_before_uvicorn_shuts_down() -> None:
    closed: list[bool] = []
    server = GracefulServer(uvicorn.Config(app=None, lifespan="off"), delay_s=0.0, on_draining=lambda: None,
                            on_closing=lambda: closed.append(True))
    server.servers = []  # what startup would have opened: nothing here

    async def stop() -> None:
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        await server.shutdown()
    asyncio.run(stop())
    assert closed == [True]
