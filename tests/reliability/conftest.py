"""Helpers of the reliability tests: metrics read over HTTP, the JSON-error check, raw sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ROOT, metric

# Text that must never reach a client: a traceback, a source file, where the code or models live.
LEAKS = ("Traceback", 'File "', ".py", str(ROOT))


def evaluated_rows(url: str) -> float:
    return metric(url, "googlenet_evaluated_rows_total")


def assert_json_error(response: httpx.Response, status: int, code: str, *, private: Path | None = None) -> None:
    """The docs/architecture.md 3.3 error shape, with the expected status and code, and nothing internal in it."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code and body["error"], body
    for leak in (*LEAKS, *([str(private)] if private else [])):
        assert leak not in response.text, (leak, response.text)
    assert response.headers.get("x-request-id"), "every answer carries its request id"


def raw_exchange(
    url: str, head: bytes, chunks: list[bytes] = (), *, timeout_s: float = 15, sent: threading.Event | None = None
) -> bytes:
    """Send a request by hand (headers, then body pieces, never finishing a chunked body on purpose)
    and return what the server answered before closing or going quiet for `timeout_s`; `sent` is
    set once everything is written."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed while we were still sending: fine
                break
        if sent is not None:
            sent.set()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def wait_until(condition: Callable[[], bool], timeout_s: float = 15) -> None:
    """Poll a condition the server exposes (bounded): for states no event of ours can signal."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
