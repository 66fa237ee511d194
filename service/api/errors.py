"""Every failure as JSON `{"error": message, "code": machine code}` with its status (service/errors.py).

No stack traces or file paths reach a client; the log has them, keyed by request id.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import metrics
from service.errors import ServiceError

log = logging.getLogger(__name__)


def count_rejection(exc: ServiceError) -> None:
    """Count a refusal under its reason and log a server-side failure (HTTP and gRPC alike)."""
    if exc.reason is not None:
        metrics.REJECTIONS.labels(exc.reason).inc()
    if exc.status >= 500 and exc.status != 503 and exc.status != 504:
        log.error("request failed: %s", exc.message)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "header"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        count_rejection(exc)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.REJECTIONS.labels("bad_input").inc()
        return error_response(400, "bad_request", _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal", "internal error; see the server log for this request id")
