"""Domain errors: each knows its HTTP status and machine code, and nothing about HTTP frameworks.

The api layer turns them into `{"error": message, "code": code}` (design.md 3.3).
"""

from __future__ import annotations

MAX_MESSAGE = 1000  # characters of an error message: one that quotes input never echoes all of it


class ServiceError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class PayloadTooLarge(ServiceError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(ServiceError):
    status, code = 422, "invalid_image"


class ImageTooLarge(ServiceError):
    status, code = 422, "image_too_large"


class ImageTooCostly(ServiceError):
    """Decoding the image would cost more CPU or memory than one image may (service/decode_cost.py)."""

    status, code = 422, "image_too_costly"


class InferenceFailed(ServiceError):
    status, code = 500, "inference_failed"


class Overloaded(ServiceError):
    """The queue cannot take the request's rows: nothing of it was started (design.md 3.3)."""

    status, code = 503, "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class DeadlineExceeded(ServiceError):
    status, code = 504, "deadline_exceeded"


class TooCostly(ServiceError):
    """The request's work could never finish within its deadline, even on an idle device (issue 12 item 3)."""

    status, code = 422, "deadline_infeasible"
