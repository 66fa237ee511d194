"""Domain errors: each carries what every protocol needs to answer it, and nothing of any framework.

- `status` and `code`: the HTTP status and the machine code of `{"error": message, "code": code}`.
- `grpc`: the name of its gRPC status code, after Triton's mapping (docs/protocol-v2.md, "gRPC
  errors"); the api layer looks the code up by name, so this module imports no gRPC.
- `reason`: the label of `googlenet_rejections_total` (service/metrics.py) for a request refused
  before inference, or None for a failure that is not a refusal.

Adding an error is one class here.
"""

from __future__ import annotations

MAX_MESSAGE = 1000  # characters of an error message: one that quotes input never echoes all of it


class ServiceError(Exception):
    status = 500
    code = "internal"
    grpc = "INTERNAL"
    reason: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, code, grpc, reason = 400, "bad_request", "INVALID_ARGUMENT", "bad_input"


class Unauthorized(ServiceError):
    status, code, grpc, reason = 401, "unauthorized", "UNAUTHENTICATED", "unauthorized"


class NotFound(ServiceError):
    status, code, grpc = 404, "not_found", "NOT_FOUND"


class BodyTimeout(ServiceError):
    """The body did not arrive within its time (a slow or stalled upload, or a gRPC message)."""

    status, code, grpc, reason = 408, "body_timeout", "DEADLINE_EXCEEDED", "deadline"


class PayloadTooLarge(ServiceError):
    status, code, grpc, reason = 413, "too_large", "RESOURCE_EXHAUSTED", "too_large"


class UnsupportedMediaType(ServiceError):
    status, code, grpc, reason = 415, "unsupported_media_type", "INVALID_ARGUMENT", "bad_input"


class InvalidImage(ServiceError):
    status, code, grpc, reason = 422, "invalid_image", "INVALID_ARGUMENT", "bad_input"


class ImageTooLarge(ServiceError):
    status, code, grpc, reason = 422, "image_too_large", "RESOURCE_EXHAUSTED", "too_large"


class ImageTooCostly(ServiceError):
    """Decoding the image would cost more CPU or memory than one image may (service/decode_cost.py)."""

    status, code, grpc, reason = 422, "image_too_costly", "RESOURCE_EXHAUSTED", "too_large"


class TooCostly(ServiceError):
    """The request's work could never finish within its deadline, even on an idle device: refused
    before any work (docs/reliability.md)."""

    status, code, grpc, reason = 422, "deadline_infeasible", "DEADLINE_EXCEEDED", "infeasible"


class ClientGone(ServiceError):
    """The client closed the connection: nobody reads the answer, so nothing more is done."""

    status, code, grpc, reason = 499, "client_gone", "CANCELLED", "client_gone"


class InferenceFailed(ServiceError):
    status, code = 500, "inference_failed"


class Overloaded(ServiceError):
    """The device cannot take the request now: nothing of it was started (docs/architecture.md)."""

    status, code, grpc, reason = 503, "overloaded", "UNAVAILABLE", "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(ServiceError):
    status, code, grpc = 503, "not_ready", "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    status, code, grpc, reason = 504, "deadline_exceeded", "DEADLINE_EXCEEDED", "deadline"


def errors() -> list[type[ServiceError]]:
    """Every error class (the metrics' closed set of reasons is checked against them)."""
    found, todo = [], [ServiceError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found
