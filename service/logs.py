"""Structured logs: one JSON object per line (python-json-logger), keyed by the request id, never
carrying request bodies.

`configure` is idempotent and safe to call from `python -m service` and from the app's lifespan.
The request id comes from the `REQUEST_ID` context variable, which the request middleware sets,
so every line a request causes (access line, error, traceback) carries the id its response shows
in `X-Request-ID` (docs/reliability.md, "Logs").
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_HANDLER = "service"  # the name of the handler `configure` installs: a second call replaces it
_MAX_FIELD_CHARS = 2048  # a runaway extra value (a huge header) cannot flood the log
_WHOLE = ("message", "exception")  # uvicorn logs a start-up traceback as a message: its last line matters
# Loggers uvicorn configures with handlers of its own: routed through ours instead. Its access
# logger is silenced: service.access (service/api/middleware.py) writes the one line per request.
_UVICORN = ("uvicorn", "uvicorn.error")
_UVICORN_ACCESS = "uvicorn.access"


def _not_json(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"  # never the bytes themselves: image data stays out of logs
    return str(value)


class _Formatter(JsonFormatter):
    """time, level, logger, message, request_id, any `extra=` fields, and the exception if any."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = log_data["level"].lower()
        for key, value in log_data.items():  # the extras: message and exception stay whole
            if key not in _WHOLE and isinstance(value, str) and len(value) > _MAX_FIELD_CHARS:
                log_data[key] = value[:_MAX_FIELD_CHARS] + "...(truncated)"
        return log_data


def _json_formatter() -> logging.Formatter:
    return _Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"},
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's copy of the message with colour codes
        json_default=_not_json,
        json_ensure_ascii=False,
    )


def _request_id(record: logging.LogRecord) -> bool:
    """Stamp the current request's id on every record that does not carry one already."""
    if not getattr(record, "request_id", None) and (rid := REQUEST_ID.get()):
        record.request_id = rid
    return True


def configure(level: str = "info", *, fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route the root logger (and uvicorn's) to one handler: JSON lines, or plain text."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Replace what basicConfig or an earlier call installed; keep anything else (a test
        # runner's capture handler, a file handler someone added on purpose).
        if type(handler) is logging.StreamHandler or handler.get_name() == _HANDLER:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER)
    handler.addFilter(_request_id)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(_json_formatter() if fmt == "json" else plain)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger(_UVICORN_ACCESS)
    access.handlers.clear()
    access.propagate = False  # no handler anywhere: uvicorn's protocols then skip their access line
