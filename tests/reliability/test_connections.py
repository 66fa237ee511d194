"""Slow, idle and oversized clients on the real `python -m service` (HTTP: service/api/connection.py,
body reads: service/api/body.py, gRPC: grpc's options in service/api/grpc/server.py), and the input
that used to reach a 500, a label value or a page without its headers. Short limits keep it bounded;
no assertion is on a duration."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2_grpc

from loadtest.servers import free_port
from scripts.hostile_wire import H2, INFER, STREAM, grpc_message, host_port, infer_request
from tests.conftest import service_process
from tests.reliability import costly
from tests.reliability.conftest import status_and_json

JPEG, JSON = {"content-type": "image/jpeg"}, {"content-type": "application/json"}


@pytest.fixture(scope="module")
def service(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    grpc_port = free_port()
    flags = ("--header-timeout-ms", "1000", "--idle-timeout-ms", "1000", "--body-read-timeout-ms", "1000",
             "--max-header-bytes", "16384", "--max-url-bytes", "8192", "--grpc-port", str(grpc_port),
             "--grpc-max-streams", "8", "--max-body-bytes", "2000000", "--max-inflight-body-bytes", "2000000")
    with service_process(tiny_repo, *flags, log=tmp_path_factory.mktemp("log") / "service.log") as (url, _):
        yield url, f"127.0.0.1:{grpc_port}"


def _answer(url: str, head: bytes, *pieces: bytes) -> bytes:
    """What the server sends before it closes (15 s bound: the test's, not the server's)."""
    with socket.create_connection(host_port(url), timeout=15) as sock:
        for piece in (head, *pieces):
            try:
                sock.sendall(piece)
            except OSError:
                break
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_an_idle_connection_is_closed(service) -> None:
    assert _answer(service[0], b"") == b""


def test_headers_that_trickle_in_get_a_408(service) -> None:
    status, body = status_and_json(_answer(service[0], b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a"))
    assert (status, body["code"]) == (408, "header_timeout")


def test_endless_headers_get_a_431_and_a_long_target_a_414(service) -> None:
    pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    status, body = status_and_json(_answer(service[0], b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad * 64))  # 64 KiB
    assert (status, body["code"]) == (431, "too_large")
    status, _ = status_and_json(_answer(service[0], b"GET /healthz?" + b"a" * 8500 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 414


def test_a_declared_body_never_sent_holds_no_budget_and_gets_a_read_timeout(service) -> None:
    url = service[0]
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 2000000\r\n\r\n"
    with socket.create_connection(host_port(url), timeout=15) as stalled:
        stalled.sendall(head)  # the whole budget, declared; before, every other upload got 503
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.post("/v1/classify", content=costly.mpo(64, 48), headers=JPEG).status_code == 200
        answer = b""
        while chunk := stalled.recv(65536):
            answer += chunk
        status, body = status_and_json(answer)
    assert (status, body["code"]) == (408, "body_timeout")


@pytest.mark.parametrize("request_", [
    ("/v1/classify?crops=" + "9" * 4400, {}, b"x"),
    ("/v2/models/tiny/infer", {"Inference-Header-Content-Length": "9" * 4400}, b"{}"),
    ("/v2/models/tiny/infer", {}, b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[' + b"9" * 4400 + b']}]}'),
    ("/v2/models/tiny/infer", {}, json.dumps({"parameters": {"timeout": 10**400}, "inputs": []}).encode()),
    ("/v2/models/tiny/infer", {}, json.dumps({"id": "x" * 300, "inputs": []}).encode()),
], ids=["v1-crops", "header-length", "json-integer", "timeout-1e400", "long-id"])
def test_a_malformed_number_or_a_long_id_is_a_400(service, request_) -> None:
    path, headers, body = request_
    with httpx.Client(base_url=service[0], timeout=30) as client:
        response = client.post(path, content=body, headers={**JSON, **headers})
    assert response.status_code == 400, response.text[:200]
    assert len(response.content) < 2000  # the echo is truncated


def _series(url: str, name: str) -> int:
    return sum(1 for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines() if line.startswith(name))


def test_refused_auto_values_create_no_metric_series(service) -> None:
    url, target = service
    image = base64.b64encode(costly.mpo(64, 48)).decode()
    before = _series(url, "googlenet_auto_choices_total")
    with httpx.Client(base_url=url, timeout=30) as client, grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for models in range(4, 24):
            body = {"parameters": {"crops": "auto", "models": models},
                    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]}
            assert client.post("/v2/models/tiny/infer", json=body).status_code == 400
            request = infer_request("tiny", costly.mpo(64, 48))
            request.parameters["crops"].string_param = "auto"
            request.parameters["models"].int64_param = models
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _series(url, "googlenet_auto_choices_total") == before


def test_every_answer_is_nosniff_the_page_is_not_framed_and_docs_are_off(service) -> None:
    with httpx.Client(base_url=service[0], timeout=30) as client:
        answers = [client.get(p) for p in ("/", "/healthz", "/v1/models", "/docs")]
        answers.append(client.post("/v1/classify", params={"crops": 7}, content=b"x", headers=JPEG))
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)
    assert "frame-ancestors 'none'" in answers[0].headers["content-security-policy"]
    assert answers[3].status_code == 404  # Swagger UI loads scripts from a CDN: off by default


def test_grpc_limits_streams_per_connection_and_cuts_a_half_sent_message(service) -> None:
    conn = H2(service[1])
    conn.pump(0.5)
    assert conn.conn.remote_settings.max_concurrent_streams == 8
    message = grpc_message(infer_request("tiny", b"\0" * 1_000_000))
    stream = conn.open(INFER)
    conn.send(stream, message[:-1000])  # all but the end, then nothing
    while stream not in conn.resets() | conn.ended() and not conn.gone:
        conn.pump(1.0)
    conn.close()
    assert stream in conn.resets() | conn.ended() or conn.gone


def test_grpc_stream_answers_are_bounded_by_what_the_client_reads(service) -> None:
    url, target = service
    conn = H2(target)
    conn.pump(0.5)
    stream = conn.open(STREAM)
    for i in range(300):  # never read: the client's window fills with the first answers
        conn.send(stream, grpc_message(infer_request("tiny", costly.mpo(64, 48), request_id=str(i))), wait_s=0.2)
        conn.pump(0, ack=False)
    conn.pump(2.0, ack=False)
    answered = _stream_requests(url)
    conn.close()
    assert answered < 300  # the stream stopped being read once answers waited to be sent


def _stream_requests(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("googlenet_requests_total") and "ModelStreamInfer" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
