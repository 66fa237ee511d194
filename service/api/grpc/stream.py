"""ModelStreamInfer: the requests of one bidirectional stream run concurrently, answers go back as
they finish, each with its request's id (perf_analyzer's --streaming mode matches them by id).

As in Triton, an error ends only its own request: it comes back as `error_message` on the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from tritonclient.grpc import service_pb2 as pb

from service import logs, metrics
from service.api.call import Call
from service.api.errors import count_rejection
from service.api.grpc import codec as grpc_codec
from service.api.grpc.status import status_code
from service.api.middleware import request_id
from service.api.v2.codec import MAX_ID_CHARS
from service.errors import BadRequest, ServiceError

if TYPE_CHECKING:
    from service.api.grpc.server import InferenceServicer

log = logging.getLogger("service.grpc")
ROUTE = "/inference.GRPCInferenceService/ModelStreamInfer"


INTERNAL_MESSAGE = "internal error; see the server log for this request id"


async def _one(servicer: InferenceServicer, request: object) -> pb.ModelStreamInferResponse:
    call, status, started = Call.now(), "200", time.perf_counter()  # the stream's deadline is not the request's
    metrics.INFLIGHT_REQUESTS.inc()
    bound = logs.REQUEST_ID.set(request_id(getattr(request, "id", "")))
    try:
        if request is grpc_codec.MALFORMED:
            raise BadRequest("a ModelStreamInfer request is not a valid protobuf message")
        return pb.ModelStreamInferResponse(infer_response=await servicer.infer(request, call))
    except ServiceError as exc:
        status = str(exc.status)
        count_rejection(exc)
        parsed = request is not grpc_codec.MALFORMED  # the echo is bounded: a 4 MiB id is not sent back
        echo = pb.ModelInferResponse(model_name=request.model_name[:MAX_ID_CHARS],
                                     id=request.id[:MAX_ID_CHARS]) if parsed else None
        return pb.ModelStreamInferResponse(error_message=exc.message, infer_response=echo)
    except asyncio.CancelledError:
        status = "499"
        raise
    except Exception:
        status = "500"
        log.exception("unexpected error")
        return pb.ModelStreamInferResponse(error_message=INTERNAL_MESSAGE)
    finally:
        servicer.observe(ROUTE, status, call.mode, started)
        logs.REQUEST_ID.reset(bound)
        metrics.INFLIGHT_REQUESTS.dec()


class _Room:
    """At most `count` requests and `size` bytes of them held by one stream (one request always fits)."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.held, self.bytes = count, size, 0, 0
        self._changed = asyncio.Condition()

    async def take(self, size: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.held == 0 or (self.held < self.count and self.bytes + size <= self.size))
            self.held, self.bytes = self.held + 1, self.bytes + size

    def give(self, size: int) -> None:
        self.held, self.bytes = self.held - 1, self.bytes - size
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


async def serve_stream(
    servicer: InferenceServicer, requests: AsyncIterator[object], context: grpc.aio.ServicerContext
) -> AsyncIterator[pb.ModelStreamInferResponse]:
    try:
        servicer.authorize(context, probe=False)
    except ServiceError as exc:
        count_rejection(exc)
        servicer.observe(ROUTE, str(exc.status), "none", time.perf_counter())
        await context.abort(status_code(exc), exc.message)
    answers: asyncio.Queue[tuple[pb.ModelStreamInferResponse, int] | None] = asyncio.Queue()
    # Requests in flight or answered but not yet sent, by count and bytes: room comes back once an answer
    # is written, so a client that never reads its answers stops being read from (answers piled up before).
    room = _Room(servicer.stream_inflight, servicer.settings.max_body_bytes)
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: object, size: int) -> None:
        await answers.put((await _one(servicer, request), size))

    async def read() -> None:
        try:
            async for request in requests:
                size = request.ByteSize() if request is not grpc_codec.MALFORMED else 0
                await room.take(size)
                task = asyncio.create_task(answer(request, size))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.wait(set(tasks))
        finally:
            answers.put_nowait(None)

    reader = asyncio.create_task(read())
    try:
        while (item := await answers.get()) is not None:
            yield item[0]  # resumes once grpc took the message, within the client's flow-control window
            room.give(item[1])
        await reader  # a broken stream's error surfaces here
    finally:
        reader.cancel()
        for task in list(tasks):  # the client left: drop its queued rows
            task.cancel()
