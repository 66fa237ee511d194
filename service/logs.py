"""Structured logs: one JSON object per line, keyed by the request id, never carrying request bodies.

`configure` is idempotent and safe to call from `python -m service` and from the app's lifespan.
The request id comes from the `REQUEST_ID` context variable, which the request middleware sets,
so every line a request causes (access line, error, traceback) carries the id its response shows
in `X-Request-ID` (docs/reliability.md, "Logs").
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Attributes every LogRecord has: anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_STANDARD |= {"color_message"}  # uvicorn's copy of the message with terminal colour codes
_MAX_FIELD_CHARS = 2048  # a runaway value (a huge header echoed into a message) cannot flood the log
# Loggers uvicorn configures with handlers of its own: routed through ours instead.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _scalar(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"  # never the bytes themselves: image data stays out of logs
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return text if len(text) <= _MAX_FIELD_CHARS else text[:_MAX_FIELD_CHARS] + "...(truncated)"


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id, any `extra=` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            doc["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = _scalar(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)  # the log has it; clients never do
        return json.dumps(doc, ensure_ascii=False, default=str)


class _OwnHandler(logging.StreamHandler):
    """The handler this module installs (a second `configure` replaces it, not doubles it). Without
    an explicit stream it writes to whatever `sys.stderr` is at the time, as a test runner swaps it."""

    def __init__(self, stream: object = None) -> None:
        self._fixed = stream
        super().__init__(stream)

    @property
    def stream(self) -> object:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # StreamHandler.__init__ and setStream assign it; the property decides


def configure(level: str = "info", *, fmt: str = "json", stream: object = None) -> None:
    """Route the root logger (and uvicorn's) to one handler: JSON lines, or plain text."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Replace what basicConfig or an earlier call installed; keep anything else (a test
        # runner's capture handler, a file handler someone added on purpose).
        if type(handler) is logging.StreamHandler or isinstance(handler, _OwnHandler):
            root.removeHandler(handler)
    handler = _OwnHandler(stream)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
