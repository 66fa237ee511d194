"""service/errors.py: the domain errors, each with its HTTP status, machine code, gRPC code and reason."""

from __future__ import annotations

import pytest

from service import errors
from service.errors import Overloaded, ServiceError

EXPECTED = {
    "ServiceError": (500, "internal"),
    "BadRequest": (400, "bad_request"),
    "Unauthorized": (401, "unauthorized"),
    "NotFound": (404, "not_found"),
    "PayloadTooLarge": (413, "too_large"),
    "UnsupportedMediaType": (415, "unsupported_media_type"),
    "InvalidImage": (422, "invalid_image"),
    "ImageTooLarge": (422, "image_too_large"),
    "ImageTooCostly": (422, "image_too_costly"),
    "TooCostly": (422, "deadline_infeasible"),
    "InferenceFailed": (500, "inference_failed"),
    "Overloaded": (503, "overloaded"),
    "NotReady": (503, "not_ready"),
    "DeadlineExceeded": (504, "deadline_exceeded"),
    "BodyTimeout": (408, "body_timeout"),
    "ClientGone": (499, "client_gone"),
}


def _defined() -> dict[str, type[ServiceError]]:
    return {
        name: value for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, ServiceError)
    }


def test_every_error_is_listed_here() -> None:
    # A new error without a pinned status and code would reach clients unchecked.
    assert set(_defined()) == set(EXPECTED)


@pytest.mark.parametrize(("name", "pinned"), EXPECTED.items())
def test_status_and_code(name: str, pinned: tuple[int, str]) -> None:
    cls = _defined()[name]
    exc = cls("what went wrong")
    assert (exc.status, exc.code) == pinned
    assert exc.message == str(exc) == "what went wrong"
    assert isinstance(exc, Exception)


def test_codes_are_unique() -> None:
    codes = [code for _, code in EXPECTED.values()]
    assert len(codes) == len(set(codes))


def test_headers_default_to_empty_and_are_not_shared() -> None:
    first, second = errors.BadRequest("a"), errors.BadRequest("b")
    first.headers["X-Test"] = "1"
    assert second.headers == {}


def test_headers_are_kept() -> None:
    exc = errors.NotReady("loading", headers={"Retry-After": "1"})
    assert exc.headers == {"Retry-After": "1"}


def test_overloaded_says_when_to_retry() -> None:
    assert Overloaded("full").headers == {"Retry-After": "1"}
    assert Overloaded("full", retry_after_s=7).headers == {"Retry-After": "7"}


def test_a_message_that_quotes_input_is_truncated() -> None:
    exc = errors.BadRequest("got " + "x" * 100_000)
    assert len(exc.message) == errors.MAX_MESSAGE and exc.message.endswith("...")


def test_every_error_names_a_real_grpc_code_and_a_reason_of_the_closed_set() -> None:
    import grpc  # the api layer's library: the service module only names the codes

    from service.metrics import REJECTION_REASONS

    for cls in errors.errors():
        assert isinstance(getattr(grpc.StatusCode, cls.grpc), grpc.StatusCode), cls
        assert cls.reason is None or cls.reason in REJECTION_REASONS, cls
    assert {c.reason for c in errors.errors()} - {None} == set(REJECTION_REASONS)  # no label left unused
