"""Requests whose cost was in the protocol, not the image (docs/reliability.md, "Cost"; v2 parsing off the loop is
tests/reliability/test_request_cost.py): JSON values past what the model takes, unbounded bodies in
flight, handlers cancelled at shutdown, two deadline clocks, providers=auto without a fallback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from service import runtime
from service.api.v2 import codec as v2_codec
from service.serving import open_serving
from service.settings import Settings
from tests.conftest import LiveServer, serve
from tests.reliability import costly
from tests.reliability.conftest import assert_json_error, metric, raw_exchange, status_and_json, wait_until
from tests.reliability.slow_model import write_slow_repository

JSON = {"content-type": "application/json"}


def test_a_v2_json_body_with_more_values_than_the_model_takes_is_refused_unparsed(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed, real = [], v2_codec.json.loads  # json.loads holds the GIL: ~1.4 s for 10M values, in any thread
    monkeypatch.setattr(v2_codec.json, "loads", lambda *a, **k: parsed.append(1) or real(*a, **k))
    with server.client() as client:
        response = client.post("/v2/models/tiny-tensor/infer", content=costly.uint8_values(3_000_000), headers=JSON)
    assert parsed == []  # read before this test's own response.json() parses
    assert_json_error(response, 400, "bad_request")
    assert "binary form" in response.json()["error"]


@pytest.fixture(scope="module")
def budget(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_body_bytes=1_000_000, max_inflight_body_bytes=3_000_000,
               request_timeout_ms=3000) as live:
        yield live


def test_bytes_in_flight_are_bounded_past_it_503(budget: LiveServer) -> None:
    head = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000000\r\n\r\n")
    with ThreadPoolExecutor(6) as pool:  # six 1 MB uploads stalled after 900 kB, against a budget of 3 MB
        answers = list(pool.map(lambda _: status_and_json(raw_exchange(budget.url, head, [b"\0" * 900_000])),
                                range(6)))
    statuses = sorted(s for s, _ in answers)
    # Bytes count as they arrive: whichever upload's bytes cross 3 MB gets 503, the held ones time out.
    assert set(statuses) == {408, 503} and statuses.count(408) <= 3, answers
    assert all(body["code"] == "overloaded" for s, body in answers if s == 503)
    # The budget is given back with each answer: an ordinary request fits again.
    with budget.client() as client:
        assert client.post("/v1/classify", content=costly.mpo(64, 48),
                           headers={"content-type": "image/jpeg"}).status_code == 200


def test_a_chunked_upload_past_the_budget_gets_503(budget: LiveServer) -> None:
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (500_000, b"\0" * 500_000)
    with ThreadPoolExecutor(8) as pool:  # 8 x 500 kB, never finished, against 3 MB
        answers = list(pool.map(lambda _: status_and_json(raw_exchange(budget.url, head, [chunk])), range(8)))
    assert sorted(s for s, _ in answers) == [408] * 6 + [503] * 2, answers


def test_a_raw_upload_finds_the_queue_full_before_its_body_is_read(tmp_path: Path) -> None:
    repo = write_slow_repository(tmp_path / "slow", layers=100)  # ~25 ms of CPU per row
    with serve(repo, instances=1, max_batch_size=1, max_queue_rows=4) as live, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, f"{live.url}/v1/classify", params={"crops": 144},
                           content=costly.mpo(320, 240), headers={"content-type": "image/jpeg"}, timeout=60)
        wait_until(lambda: metric(live.url, "googlenet_queue_rows") > 0)  # 144 rows: seconds of work
        head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 500000\r\n\r\n"
        status, body = status_and_json(raw_exchange(live.url, head, [b"\0" * 1000]))  # the rest never comes
        assert (status, body.get("code")) == (503, "overloaded"), body
        assert busy.result().status_code == 200


def _dribbled(first: bytes, rest: bytes, pause_s: float) -> Iterator[bytes]:
    yield first
    time.sleep(pause_s)  # the client's own pause: the server cannot answer before it ends
    yield rest


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_deadline_runs_from_the_first_byte_for_both_protocols(server: LiveServer, protocol: str) -> None:
    image = costly.mpo(64, 48)
    if protocol == "v1":
        target, kind, body = "/v1/classify?deadline_ms=300", "image/jpeg", image
    else:  # Triton's per-request timeout parameter, in microseconds
        target, kind = "/v2/models/tiny/infer", "application/json"
        body = json.dumps({"parameters": {"timeout": 300_000}, "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}).encode()
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
    status, answer = status_and_json(raw_exchange(server.url, head.encode(), _dribbled(body[:50], body[50:], 0.6)))
    assert (status, answer.get("code")) == (504, "deadline_exceeded"), answer


def _evaluated() -> float:
    return REGISTRY.get_sample_value("googlenet_evaluated_rows_total", {"model": "tiny-0"}) or 0.0


def test_a_handler_cancelled_at_the_end_of_the_grace_period_drops_its_rows(tmp_path: Path) -> None:
    repo = write_slow_repository(tmp_path / "slow", layers=100)  # ~25 ms of CPU per row
    live = serve(repo, instances=1, max_batch_size=1)
    with live, ThreadPoolExecutor(1) as pool:
        live.server.config.timeout_graceful_shutdown = 0.5  # uvicorn cancels the handlers after this
        before = _evaluated()
        pending = pool.submit(httpx.post, f"{live.url}/v1/classify", params={"crops": 144},
                              content=costly.mpo(320, 240), headers={"content-type": "image/jpeg"}, timeout=60)
        wait_until(lambda: metric(live.url, "googlenet_queue_rows") > 0)
        live.server.should_exit = True
        live.thread.join(60)
        assert not live.thread.is_alive()
        # 144 rows need 3.6 s of one core; the handler was cancelled 0.5 s after the stop began. Its
        # classification must be cancelled with it, not drained for an answer nobody reads.
        assert _evaluated() - before < 144
        pending.exception()  # whatever the client saw of the stop; it is not what is measured


def test_providers_auto_falls_back_to_cpu_when_the_cuda_provider_fails(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if runtime._cuda_usable():
        pytest.skip("a GPU is usable here: the CUDA provider would start")
    monkeypatch.setattr(runtime, "_cuda_usable", lambda: True)  # libcuda loads, the provider cannot start
    with LiveServer(Settings(model_repository=tiny_repo, providers="auto")) as live, live.client() as client:
        assert client.get("/v1/models").json()["provider"] == "cpu"
        assert client.post("/v1/classify", content=costly.mpo(64, 48),
                           headers={"content-type": "image/jpeg"}).status_code == 200
    with pytest.raises(runtime.ModelLoadError, match="CUDA provider"):  # providers=cuda still fails hard
        open_serving(Settings(model_repository=tiny_repo, providers="cuda"))
