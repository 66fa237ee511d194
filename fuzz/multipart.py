"""Fuzz target: request bodies through the real body reader (service/api/body.py) behind the bytes-in-flight
budget (service/api/inflight.py): size limit, multipart parsing (Starlette + python-multipart) or raw
image bytes, fed in uneven chunks; whatever happens, the budget is all given back."""

from __future__ import annotations

import asyncio

import atheris

with atheris.instrument_imports(include=["multipart", "python_multipart", "starlette.formparsers", "service"]):
    import multipart  # python-multipart, the parser under Starlette's MultiPartParser
    import starlette.formparsers
    from starlette.requests import Request

    from service.api import body as body_reader
    from service.api.inflight import BodyBudget

from fuzz.harness import fuzz, refused_by_the_service

LIMIT, MAX_IMAGES = 64 * 1024, 4
TYPES = [b"multipart/form-data; boundary=XyZ", b"image/jpeg", b"multipart/form-data", b"text/plain",
         b'multipart/form-data; boundary="a b"; charset=utf-8']
assert multipart and starlette.formparsers


def seeds() -> list[bytes]:
    part = (b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0data\r\n")
    field = b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
    plain = b'--XyZ\r\nContent-Disposition: form-data; name="image"\r\n\r\n\xff\xd8\xff\xe0data\r\n'
    return [b"\x00\x07" + part + field + part + b"--XyZ--\r\n", b"\x01\x03\xff\xd8\xff\xe0raw", b"\x00\x40--XyZ--\r\n",
            b"\x00\x05" + part + plain + b"--XyZ--\r\n"]


async def _read(content_type: bytes, chunk: int, body: bytes) -> list[bytes]:
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    images: list[bytes] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def app(scope: dict, receive: object, send: object) -> None:
        images.extend(await body_reader.read_images(Request(scope, receive), limit=LIMIT, max_images=MAX_IMAGES))

    headers = [(b"content-type", content_type)]
    if chunk % 2:  # half the inputs declare their length (reserved up front), half arrive as if chunked
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/classify", "query_string": b"", "headers": headers}
    budget = BodyBudget(app, limit=2 * LIMIT + 64, max_body=LIMIT)  # room for one body: never a 503 here
    try:
        await budget(scope, receive, None)
    finally:
        assert budget.held == 0, f"{budget.held} bytes of the budget were not given back"
    return images


def test_one(data: bytes) -> None:
    if len(data) < 2:
        return
    content_type, chunk = TYPES[data[0] % len(TYPES)], 1 + data[1] % 64
    try:
        images = asyncio.run(_read(content_type, chunk, data[2:]))
    except Exception as exc:
        if refused_by_the_service(exc):
            return
        raise
    assert images and len(images) <= MAX_IMAGES and all(isinstance(i, bytes) for i in images)


if __name__ == "__main__":
    fuzz(test_one, seeds)
