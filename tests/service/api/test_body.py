"""service/api/body.py: request bodies read within their size and time limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from starlette.requests import Request

from service.api.body import read_body, read_images
from service.errors import BadRequest, BodyTimeout, ClientGone, PayloadTooLarge, UnsupportedMediaType

Receive = Callable[[], Awaitable[dict]]


class Upload:
    """An ASGI receive callable that hands out `chunks`, then the end (or a disconnect), and counts reads."""

    def __init__(self, *chunks: bytes, disconnect: bool = False) -> None:
        self.chunks, self.disconnect, self.reads = list(chunks), disconnect, 0

    async def __call__(self) -> dict:
        self.reads += 1
        if self.chunks:
            chunk = self.chunks.pop(0)
            more = bool(self.chunks) or self.disconnect
            return {"type": "http.request", "body": chunk, "more_body": more}
        if self.disconnect:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}


async def _stalled() -> dict:
    await asyncio.Event().wait()  # an upload whose next chunk never comes
    raise AssertionError("unreachable")


def _request(receive: Receive, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": raw}
    return Request(scope, receive)


def _multipart(files: list[tuple[str, tuple]], data: dict | None = None) -> tuple[bytes, dict]:
    built = httpx.Request("POST", "http://127.0.0.1/", files=files, data=data)
    return built.read(), dict(built.headers)


def _run(coro: Awaitable) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _images(receive: Receive, headers: dict | None = None, *, limit: int = 10_000, max_images: int) -> list:
    return _run(read_images(_request(receive, headers), limit=limit, max_images=max_images))  # type: ignore[return-value]


def test_read_body_joins_the_chunks() -> None:
    assert _run(read_body(_request(Upload(b"ab", b"cd", b"e")), limit=5)) == b"abcde"


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    upload = Upload(b"x" * 10)
    with pytest.raises(PayloadTooLarge, match="larger than the limit of 5 bytes"):
        _run(read_body(_request(upload, {"content-length": "10"}), limit=5))
    assert upload.reads == 0


@pytest.mark.parametrize("declared", ["-1", "ten", "1e3", ""])
def test_a_declared_length_that_is_not_a_number_is_refused(declared: str) -> None:
    with pytest.raises(PayloadTooLarge):
        _run(read_body(_request(Upload(b"x"), {"content-length": declared}), limit=5))


def test_reading_stops_at_the_limit_when_no_length_is_declared() -> None:
    upload = Upload(b"abc", b"def", b"ghi", b"jkl")
    with pytest.raises(PayloadTooLarge):
        _run(read_body(_request(upload), limit=5))
    assert upload.reads == 2 and upload.chunks == [b"ghi", b"jkl"]


def test_a_body_of_exactly_the_limit_is_read() -> None:
    assert _run(read_body(_request(Upload(b"abc", b"de"), {"content-length": "5"}), limit=5)) == b"abcde"


def test_a_disconnect_mid_upload_is_client_gone() -> None:
    with pytest.raises(ClientGone, match="disconnected during the upload") as caught:
        _run(read_body(_request(Upload(b"abc", disconnect=True)), limit=100))
    assert (caught.value.status, caught.value.code) == (499, "client_gone")


def test_a_stalled_body_times_out() -> None:
    with pytest.raises(BodyTimeout, match="within the request's 0.01 s") as caught:
        _run(read_body(_request(_stalled), limit=100, timeout_s=0.01))
    assert (caught.value.status, caught.value.code) == (408, "body_timeout")


@pytest.mark.parametrize("content_type", [None, "image/jpeg", "IMAGE/PNG", "application/octet-stream"])
def test_a_raw_body_is_one_image(content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert _images(Upload(b"pic", b"ture"), headers, limit=100, max_images=4) == [b"picture"]


def test_an_empty_raw_body_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="the body is empty"):
        _images(Upload(), {"content-type": "image/png"}, limit=100, max_images=4)


def test_a_raw_body_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        _images(Upload(b"x" * 101), {"content-type": "image/png"}, limit=100, max_images=4)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_other_content_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=f"Content-Type '{content_type}' is not an image"):
        _images(Upload(b"{}"), {"content-type": content_type}, limit=100, max_images=4)


def test_multipart_gives_every_image_field_in_order() -> None:
    body, headers = _multipart(
        [("image", ("a.jpg", b"first", "image/jpeg")), ("other", ("b.jpg", b"skip", "image/jpeg")),
         ("image", ("c.png", b"second", "image/png"))]
    )
    assert _images(Upload(body), headers, max_images=4) == [b"first", b"second"]


def test_a_multipart_plain_field_named_image_is_a_bad_request_asking_for_a_file_part() -> None:
    # The parser turns a plain field into text, so its bytes are gone: refused, not decoded.
    body, headers = _multipart([("note", ("n.txt", b"x", "text/plain"))], data={"image": "inline"})
    with pytest.raises(BadRequest, match="must be a file part"):
        _images(Upload(body), headers, max_images=4)


def test_multipart_without_an_image_field_is_a_bad_request() -> None:
    body, headers = _multipart([("photo", ("a.jpg", b"data", "image/jpeg"))])
    with pytest.raises(BadRequest, match="no field named 'image'"):
        _images(Upload(body), headers, max_images=4)


def test_more_files_than_allowed_is_a_bad_request() -> None:
    body, headers = _multipart([("image", (f"{i}.jpg", b"data", "image/jpeg")) for i in range(3)])
    with pytest.raises(BadRequest, match="malformed multipart body"):
        _images(Upload(body), headers, max_images=2)


def test_a_multipart_body_without_a_boundary_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="malformed multipart body"):
        _images(Upload(b"junk"), {"content-type": "multipart/form-data"}, limit=100, max_images=2)


def test_a_multipart_body_over_the_limit_is_too_large() -> None:
    body, headers = _multipart([("image", ("a.jpg", b"x" * 500, "image/jpeg"))])
    headers.pop("content-length")
    with pytest.raises(PayloadTooLarge):
        _images(Upload(body), headers, limit=200, max_images=2)


def test_a_stalled_multipart_upload_times_out() -> None:
    with pytest.raises(BodyTimeout):
        _run(read_images(
            _request(_stalled, {"content-type": "multipart/form-data; boundary=x"}),
            limit=100, max_images=2, timeout_s=0.01,
        ))


def test_a_disconnect_mid_multipart_upload_is_client_gone() -> None:
    body, headers = _multipart([("image", ("a.jpg", b"x" * 500, "image/jpeg"))])
    upload = Upload(body[:100], disconnect=True)
    with pytest.raises(ClientGone):
        _images(upload, headers, max_images=2)


def test_a_pause_past_idle_s_is_a_body_timeout_before_the_whole_request_s_time() -> None:
    with pytest.raises(BodyTimeout, match="no body byte arrived for 0.05 s"):
        _run(read_body(_request(_stalled), limit=100, timeout_s=60, idle_s=0.05))


def test_a_content_length_of_4400_digits_is_a_413_not_a_500() -> None:
    with pytest.raises(PayloadTooLarge):
        _run(read_body(_request(Upload(b"x"), {"content-length": "9" * 4400}), limit=5))
