"""Request bodies: the size and time limits enforced while reading, raw image or multipart `image` fields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from service.errors import BadRequest, BodyTimeout, ClientGone, PayloadTooLarge, UnsupportedMediaType

RAW_TYPES = ("image/", "application/octet-stream")


async def _limited(request: Request, limit: int, idle_s: float | None = None) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    # A length is compared by its digits: int() of 4,400 digits raises (Python's digit limit).
    if declared is not None and (not declared.isdigit() or len(declared.lstrip("0")) > len(str(limit))
                                 or int(declared) > limit):
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
    received = 0
    stream = request.stream().__aiter__()
    try:
        while True:
            try:  # a client that stops sending is cut after `idle_s`, not after the whole request's time
                async with asyncio.timeout(idle_s):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BodyTimeout(f"no body byte arrived for {idle_s:g} s") from None
            received += len(chunk)
            if received > limit:  # stop reading: a slow or endless upload costs no more than the limit
                raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
            yield chunk
    except ClientDisconnect:  # gone mid-upload: not a server error (was a logged 500)
        raise ClientGone("the client disconnected during the upload") from None


async def read_body(
    request: Request, limit: int, timeout_s: float | None = None, idle_s: float | None = None
) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            return b"".join([chunk async for chunk in _limited(request, limit, idle_s)])
    except TimeoutError:
        raise _too_slow(timeout_s) from None


def _too_slow(timeout_s: float | None) -> BodyTimeout:
    # Without a bound a stalled upload holds its connection forever (uvicorn has no body timeout).
    return BodyTimeout(f"the body did not arrive within the request's {timeout_s:g} s")


async def read_images(
    request: Request, *, limit: int, max_images: int, timeout_s: float | None = None, idle_s: float | None = None
) -> list[bytes]:
    """The request's images: the raw body, or every multipart field named `image`, read within
    `timeout_s` seconds, with no pause longer than `idle_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_images(request, limit=limit, max_images=max_images, idle_s=idle_s)
    except TimeoutError:
        raise _too_slow(timeout_s) from None


async def _read_images(request: Request, *, limit: int, max_images: int, idle_s: float | None) -> list[bytes]:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, _limited(request, limit, idle_s), max_files=max_images,
                                 max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadRequest(f"malformed multipart body: {exc.message}") from None
        images = []
        for field in form.getlist("image"):
            if not isinstance(field, UploadFile):  # the parser made it text: its bytes are gone
                await form.close()
                raise BadRequest(
                    "the multipart field 'image' must be a file part (a filename in its Content-Disposition, "
                    "as curl -F 'image=@photo.jpg' sends), not a plain form field"
                )
            images.append(await field.read())
            await field.close()
        if not images:
            raise BadRequest("the multipart body has no field named 'image'")
        return images
    if not content_type or content_type.startswith(RAW_TYPES):
        data = await read_body(request, limit, idle_s=idle_s)
        if not data:
            raise BadRequest("the body is empty: send an image (raw, or multipart field 'image')")
        return [data]
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} is not an image; send image/* or multipart/form-data"
    )
