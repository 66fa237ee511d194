"""The one table from the service's errors (which carry HTTP statuses) to gRPC status codes, after
Triton's mapping (docs/protocol-v2.md, "gRPC errors"), and the retry hint that goes with UNAVAILABLE."""

from __future__ import annotations

import grpc

from service.errors import (
    BadRequest,
    DeadlineExceeded,
    ImageTooCostly,
    ImageTooLarge,
    InvalidImage,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    TooCostly,
    Unauthorized,
    UnsupportedMediaType,
)

# The service's errors as Triton's gRPC codes (docs/protocol-v2.md, "gRPC errors"); the HTTP status
# still labels the request metrics, so one dashboard counts both protocols.
STATUS_CODES: dict[type[ServiceError], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidImage: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ImageTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ImageTooCostly: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.UNAVAILABLE,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    TooCostly: grpc.StatusCode.DEADLINE_EXCEEDED,  # the deadline can never be met: refused before any work
}
_BY_STATUS = {408: grpc.StatusCode.DEADLINE_EXCEEDED, 499: grpc.StatusCode.CANCELLED}


def status_code(exc: ServiceError) -> grpc.StatusCode:
    code = STATUS_CODES.get(type(exc)) or _BY_STATUS.get(exc.status)
    return code or (grpc.StatusCode.INVALID_ARGUMENT if exc.status < 500 else grpc.StatusCode.INTERNAL)


def trailers(exc: ServiceError) -> tuple[tuple[str, str], ...]:
    """Retry-After as metadata, and as gRPC's own server pushback (gRFC A6) for clients that retry."""
    after = exc.headers.get("Retry-After")
    return () if after is None else (("retry-after", after), ("grpc-retry-pushback-ms", str(int(after) * 1000)))


