"""A service error as a gRPC status: the code each error class names (service/errors.py), and the
retry hint that goes with UNAVAILABLE."""

from __future__ import annotations

import grpc

from service.errors import ServiceError


def status_code(exc: ServiceError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.grpc)


def trailers(exc: ServiceError) -> tuple[tuple[str, str], ...]:
    """Retry-After as metadata, and as gRPC's own server pushback (gRFC A6) for clients that retry."""
    after = exc.headers.get("Retry-After")
    return () if after is None else (("retry-after", after), ("grpc-retry-pushback-ms", str(int(after) * 1000)))
