"""Structured logs (service/logs.py): JSON lines with the request id, no bytes, bounded fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.servers import ServerProcess
from service import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    out = io.StringIO()
    logs.configure("debug", stream=out)
    yield out
    root.handlers[:] = before
    root.setLevel(level)


def _records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_json_with_time_level_logger_message_and_extra_fields(stream: io.StringIO) -> None:
    logging.getLogger("service.test").warning("hello %s", "world", extra={"status": 503, "model": "m"})
    (record,) = _records(stream)
    assert record["level"] == "warning" and record["logger"] == "service.test"
    assert record["message"] == "hello world" and record["status"] == 503 and record["model"] == "m"
    assert record["time"].endswith("Z") and "T" in record["time"]


def test_the_request_id_of_the_context_is_on_every_line(stream: io.StringIO) -> None:
    bound = logs.REQUEST_ID.set("req-42")
    try:
        logging.getLogger("service.test").info("inside")
    finally:
        logs.REQUEST_ID.reset(bound)
    logging.getLogger("service.test").info("outside")
    inside, outside = _records(stream)
    assert inside["request_id"] == "req-42" and "request_id" not in outside


def test_bytes_never_reach_the_log_and_long_fields_are_cut(stream: io.StringIO) -> None:
    logging.getLogger("service.test").info("x", extra={"body": b"\xff\xd8JFIF secret", "header": "h" * 10_000})
    (record,) = _records(stream)
    assert record["body"] == "<13 bytes>" and "JFIF" not in stream.getvalue()
    assert len(record["header"]) < 2100 and record["header"].endswith("(truncated)")


def test_an_exception_is_one_field_and_a_second_configure_replaces_the_handler(stream: io.StringIO) -> None:
    logs.configure("info", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("service.test").exception("failed")
    (record,) = _records(stream)  # one handler: one line, not two
    assert "RuntimeError: boom" in record["exception"] and record["level"] == "error"


def test_uvicorn_loggers_go_through_the_same_handler(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("started", extra={"color_message": "\x1b[32mstarted\x1b[0m"})
    (record,) = _records(stream)
    assert record["logger"] == "uvicorn.error" and "color_message" not in record


def test_a_long_message_is_kept_whole(stream: io.StringIO) -> None:
    traceback = "Traceback...\n" + "x" * 5000 + "\nModelLoadError: tiny-1 has no model.onnx"
    logging.getLogger("uvicorn.error").error(traceback)
    (record,) = _records(stream)
    assert record["message"].endswith("has no model.onnx")


def test_python_m_service_writes_only_json_and_one_access_line_per_request(tiny_repo: Path, tmp_path: Path) -> None:
    """The real process: uvicorn's start-up lines in the same JSON, and each request logged once."""
    log = tmp_path / "service.log"
    with ServerProcess("service", ["--model-repository", str(tiny_repo), "--providers", "cpu"], log=log) as server:
        for _ in range(3):
            assert httpx.get(server.url + "/healthz").status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert any(line["message"].startswith("Started server process") for line in lines)
    access = [line for line in lines if line["logger"].endswith("access")]
    health = [line for line in access if line.get("route") == "/healthz"]
    assert len(health) == 3 and {line["logger"] for line in access} == {"service.access"}
