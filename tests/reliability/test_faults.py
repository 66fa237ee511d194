"""Faults: broken models at start-up, a failing batch, slow and vanishing clients. SIGTERM under load
is tests/service/test_lifecycle.py (every accepted request answered, exit 0); not repeated here."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from PIL import Image

from tests.conftest import ROOT, LiveServer, make_image, serve
from tests.reliability import hostile
from tests.reliability.conftest import (
    assert_json_error,
    evaluated_rows,
    metric,
    raw_exchange,
    status_and_json,
    wait_until,
)
from tests.tiny_models import write_repository

# --- start-up -------------------------------------------------------------------------------------

def _missing_file(repo: Path) -> None:
    (repo / "tiny-1" / "1" / "model.onnx").unlink()


def _corrupt_checked_file(repo: Path) -> None:
    (repo / "tiny-1" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage, not protobuf" * 100)


def _unlisted(repo: Path) -> None:  # no checksum in model.json: ONNX Runtime is the one to refuse it
    meta = json.loads((repo / "tiny-1" / "model.json").read_text())
    meta.pop("files")
    (repo / "tiny-1" / "model.json").write_text(json.dumps(meta))


def _corrupt_unchecked_file(repo: Path) -> None:
    _unlisted(repo)
    _corrupt_checked_file(repo)


def _wrong_contract(repo: Path) -> None:
    _unlisted(repo)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    (repo / "tiny-1" / "1" / "model.onnx").write_bytes(model.SerializeToString())


BROKEN = {
    "missing model file": (_missing_file, "has no model.onnx"),
    "corrupt file, checksum listed": (_corrupt_checked_file, "fails its sha256 check"),
    "corrupt file, no checksum": (_corrupt_unchecked_file, "cannot load tiny-1"),
    "wrong input/output contract": (_wrong_contract, "does not follow the I/O contract"),
}


def test_a_broken_model_stops_start_up_with_a_clear_error_and_a_nonzero_exit(tmp_path: Path) -> None:
    procs = {}
    for i, (name, (breaking, _)) in enumerate(BROKEN.items()):
        repo = write_repository(tmp_path / f"repo{i}", members=3)
        breaking(repo)
        args = [sys.executable, "-m", "service", "--model-repository", str(repo), "--port", "0", "--providers", "cpu"]
        procs[name] = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():  # started together: one start-up's wait, not four
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, (name, out[-2000:])
        assert BROKEN[name][1] in out, (name, out[-2000:])
        assert "Application startup complete" not in out  # it never listened, so it was never ready


# --- a failing batch ------------------------------------------------------------------------------

def test_a_failing_batch_fails_only_its_own_requests(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "poisoned", members=1, poison=True)
    clean = [make_image(seed=i) for i in range(6)]
    poisoned = [hostile.encode(Image.new("RGB", (64 + i, 64), "white"), "PNG") for i in range(6)]  # all 255
    with serve(repo, max_batch_size=1, instances=1) as live, live.client() as client:
        errors_before = metric(live.url, "googlenet_batches_total", model="tiny-0", outcome="error")
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            send = lambda d: client.post("/v1/classify", content=d, headers={"content-type": "image/png"})  # noqa: E731
            answers = list(pool.map(send, [d for pair in zip(clean, poisoned, strict=True) for d in pair]))
        for i, response in enumerate(answers):
            if i % 2:
                assert_json_error(response, 500, "inference_failed", private=repo)
            else:
                assert response.status_code == 200, response.text
        assert metric(live.url, "googlenet_batches_total", model="tiny-0", outcome="error") == errors_before + 6
        assert client.post("/v1/classify", content=clean[0], headers={"content-type": "image/png"}).status_code == 200


# --- slow and vanished clients --------------------------------------------------------------------

def _head(length: int, path: str = "/v1/classify") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_stalled_uploads_hold_no_worker_cost_nothing_and_time_out(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1, max_batch_size=1, request_timeout_ms=3000) as live:
        before = evaluated_rows(live.url)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # eight uploads that send 1 KB of a promised 50 KB, then stall
            stalled = [pool.submit(raw_exchange, live.url, _head(50_000), [b"\xff" * 1024]) for _ in range(8)]
            wait_until(lambda: metric(live.url, "googlenet_inflight_requests") >= 8)
            with live.client() as client:  # meanwhile the service answers everyone else
                for i in range(5):
                    r = client.post("/v1/classify", content=make_image(seed=i), headers={"content-type": "image/jpeg"})
                    assert r.status_code == 200
            answers = [status_and_json(f.result()) for f in stalled]
        assert all(status == 408 and body["code"] == "body_timeout" for status, body in answers), answers
        assert evaluated_rows(live.url) == before + 5  # the stalled uploads cost no evaluation


def test_a_stalled_v2_upload_times_out_too(tiny_repo: Path) -> None:
    with serve(tiny_repo, models=1, instances=1, request_timeout_ms=1000) as live:
        answer = raw_exchange(live.url, _head(50_000, "/v2/models/tiny/infer"), [b'{"inputs": ['])
        status, body = status_and_json(answer)
        assert status == 408 and body["code"] == "body_timeout", answer


@pytest.fixture
def gated(tiny_repo: Path):
    """A server whose one model slot can be held shut: the model still runs, when the test says so."""
    with serve(tiny_repo, models=1, instances=1, max_batch_size=1) as live:
        batcher = live.app.state.serving.classifier.ensemble.queues["tiny-0"]
        entered, release, real = threading.Event(), threading.Event(), batcher.run_batch

        def run_batch(rows: np.ndarray) -> np.ndarray:
            entered.set()
            release.wait(30)
            return real(rows)

        batcher.run_batch = run_batch
        try:
            yield live, batcher, entered, release
        finally:
            release.set()


def test_a_client_that_leaves_while_queued_costs_no_evaluation(gated) -> None:
    live, batcher, entered, release = gated
    before, gone = evaluated_rows(live.url), metric(live.url, "googlenet_rejections_total", reason="client_gone")
    image = make_image()
    with concurrent.futures.ThreadPoolExecutor(1) as pool, live.client() as client:
        first = pool.submit(client.post, "/v1/classify", content=image, headers={"content-type": "image/jpeg"})
        assert entered.wait(15)  # the first request holds the only slot
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:  # the second queues behind it ...
            sock.sendall(_head(len(image)) + image)
            wait_until(lambda: batcher.queued_rows == 1)
        # ... and hangs up: its rows are dropped, never run
        wait_until(lambda: metric(live.url, "googlenet_rejections_total", reason="client_gone") == gone + 1)
        release.set()
        assert first.result(timeout=30).status_code == 200
    wait_until(lambda: batcher.queued_rows == 0)
    assert evaluated_rows(live.url) == before + 1  # only the request whose client stayed


def test_a_client_that_leaves_mid_upload_is_not_a_server_error(server: LiveServer) -> None:
    answered_499 = metric(server.url, "googlenet_requests_total", status="499")
    errors = metric(server.url, "googlenet_requests_total", status="500")
    raw_exchange(server.url, _head(100_000), [b"\xff\xd8" * 500], timeout_s=0.5)  # then the socket closes
    wait_until(lambda: metric(server.url, "googlenet_requests_total", status="499") == answered_499 + 1)
    assert metric(server.url, "googlenet_requests_total", status="500") == errors
