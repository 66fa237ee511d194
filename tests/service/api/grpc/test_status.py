"""The service's errors as Triton's gRPC status codes (service/api/grpc/status.py)."""

from __future__ import annotations

import grpc

from service.api.grpc.status import status_code, trailers
from service.errors import (
    BadRequest,
    DeadlineExceeded,
    ImageTooLarge,
    InferenceFailed,
    InvalidImage,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)


def test_every_service_error_has_the_code_triton_gives_it() -> None:
    table = {
        BadRequest: "INVALID_ARGUMENT", InvalidImage: "INVALID_ARGUMENT", NotFound: "NOT_FOUND",
        PayloadTooLarge: "RESOURCE_EXHAUSTED", ImageTooLarge: "RESOURCE_EXHAUSTED", Unauthorized: "UNAUTHENTICATED",
        NotReady: "UNAVAILABLE", DeadlineExceeded: "DEADLINE_EXCEEDED", InferenceFailed: "INTERNAL",
    }
    for error, code in table.items():
        assert status_code(error("x")).name == code, error
    full = Overloaded("full", retry_after_s=2)
    assert status_code(full) == grpc.StatusCode.UNAVAILABLE
    assert dict(trailers(full)) == {"retry-after": "2", "grpc-retry-pushback-ms": "2000"}
