"""Bad input over gRPC against the real server: every malformed or hostile message gets its status
code (never INTERNAL or UNKNOWN, the gRPC 5xx), a message with nothing internal in it, costs no
model evaluation, and leaves the server ready. Table: docs/reliability.md, "Bad input over gRPC"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from tritonclient.grpc import service_pb2 as pb

from loadtest.servers import free_port
from tests.conftest import LiveServer, make_image, serve
from tests.reliability import hostile
from tests.reliability.conftest import LEAKS, evaluated_rows

LIMIT = 1_000_000  # max_body_bytes, and so the largest gRPC message the server takes
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _grpc_500s() -> dict[tuple[str, ...], float]:
    """googlenet_requests_total{status="500"} of gRPC routes (the server shares this process's registry)."""
    return {
        tuple(s.labels.values()): s.value for family in REGISTRY.collect() for s in family.samples
        if s.name == "googlenet_requests_total" and s.labels["route"].startswith("/inference.")
        and s.labels["status"] == "500"
    }


@pytest.fixture(scope="module")
def before() -> dict[tuple[str, ...], float]:
    """What earlier test modules left in the registry: only this module's requests are judged."""
    return _grpc_500s()


@pytest.fixture(scope="module")
def strict(tiny_repo: Path, before: dict[tuple[str, ...], float]) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_body_bytes=LIMIT, max_images_per_request=4, max_image_pixels=4_000_000,
               instances=1, grpc_port=free_port()) as live:
        yield live


def infer(model: str = "tiny", images: list[bytes] | None = None, *, datatype: str = "BYTES",
          shape: list[int] | None = None, **parameters: object) -> bytes:
    images = [make_image()] if images is None else images
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="image", datatype=datatype, shape=shape or [len(images), 1])
    message.raw_input_contents.append(b"".join(len(i).to_bytes(4, "little") + i for i in images))
    for key, value in parameters.items():
        field = {str: "string_param", bool: "bool_param", int: "int64_param", float: "double_param"}[type(value)]
        setattr(message.parameters[key], field, value)
    return message.SerializeToString()


def _with(edit: Callable[[pb.ModelInferRequest], None]) -> bytes:
    message = pb.ModelInferRequest.FromString(infer())
    edit(message)
    return message.SerializeToString()


# (id, expected code, the serialized ModelInferRequest or whatever bytes are sent instead)
REJECTED: list[tuple[str, str, bytes | Callable[[], bytes]]] = [
    ("not a protobuf message", "INVALID_ARGUMENT", b"\xff\xff\xff\xff"),
    ("invalid UTF-8 in the model name", "INVALID_ARGUMENT",
     pb.ModelInferRequest(model_name="ti").SerializeToString().replace(b"ti", b"\xff\xfe")),
    ("truncated message", "INVALID_ARGUMENT", lambda: infer()[:-100]),
    ("message over max_body_bytes", "RESOURCE_EXHAUSTED", lambda: infer(images=[b"\0" * (LIMIT + 1)])),
    ("no inputs", "INVALID_ARGUMENT", pb.ModelInferRequest(model_name="tiny").SerializeToString()),
    ("unknown model", "NOT_FOUND", lambda: infer("resnet")),
    ("unknown version", "NOT_FOUND", lambda: _with(lambda m: setattr(m, "model_version", "9"))),
    ("model ../../etc/passwd", "NOT_FOUND", lambda: infer("../../etc/passwd")),
    ("wrong datatype", "INVALID_ARGUMENT", lambda: infer(datatype="FP32", shape=[1, 4])),
    ("shape 2^40 x 2^40 on a few bytes", "INVALID_ARGUMENT", lambda: infer(shape=[2**40, 2**40])),
    ("negative dimension", "INVALID_ARGUMENT", lambda: infer(shape=[1, -1])),
    ("BYTES length past the data", "INVALID_ARGUMENT",
     lambda: _with(lambda m: m.raw_input_contents.__setitem__(0, b"\xff\xff\xff\x7fjpeg"))),
    ("two raw contents for one input", "INVALID_ARGUMENT", lambda: _with(lambda m: m.raw_input_contents.append(b""))),
    ("batch of 0", "INVALID_ARGUMENT", lambda: infer(images=[], shape=[0, 1])),
    ("batch over the limit", "INVALID_ARGUMENT", lambda: infer(images=[make_image()] * 5)),
    ("crops 7", "INVALID_ARGUMENT", lambda: infer(crops=7)),
    ("crops as a string", "INVALID_ARGUMENT", lambda: infer(crops="10")),
    ("timeout NaN", "INVALID_ARGUMENT", lambda: infer(timeout=float("nan"))),
    ("parameter without a value", "INVALID_ARGUMENT", lambda: _with(lambda m: m.parameters["crops"].Clear())),
    ("models on a member", "INVALID_ARGUMENT", lambda: infer("tiny-0", models=2)),
    ("not an image", "INVALID_ARGUMENT", lambda: infer(images=[b"plain text"])),
    ("truncated JPEG", "INVALID_ARGUMENT", lambda: infer(images=[hostile.truncated(make_image())])),
    ("PNG pixel bomb", "RESOURCE_EXHAUSTED", lambda: infer(images=[hostile.png_bomb()])),
    ("uint8 crops as BYTES", "INVALID_ARGUMENT", lambda: infer("tiny-tensor")),
]


def _call(
    strict: LiveServer, body: bytes, *, method: str = INFER, compression: grpc.Compression | None = None
) -> grpc.RpcError:
    with grpc.insecure_channel(strict.grpc_target) as channel:  # bytes in, bytes out: no client checks
        call = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as refused:
            call(body, timeout=30, compression=compression)
    return refused.value


@pytest.mark.parametrize(("case", "code", "body"), REJECTED, ids=[c[0] for c in REJECTED])
def test_bad_messages_get_their_code_and_cost_no_evaluation(
    strict: LiveServer, case: str, code: str, body: bytes | Callable[[], bytes]
) -> None:
    before = evaluated_rows(strict.url)
    error = _call(strict, body() if callable(body) else body)
    assert error.code().name == code, (case, error.details())
    assert error.details() and not any(leak in error.details() for leak in LEAKS), error.details()
    assert evaluated_rows(strict.url) == before


def test_a_compressed_bomb_is_cut_at_the_message_limit(strict: LiveServer) -> None:
    bomb = infer(images=[bytes(50 * LIMIT)])  # 50 MB of zeros: ~50 kB gzipped on the wire
    assert _call(strict, bomb, compression=grpc.Compression.Gzip).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unknown_methods_are_unimplemented_not_errors(strict: LiveServer) -> None:
    error = _call(strict, b"", method="/inference.GRPCInferenceService/CudaSharedMemoryRegister")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_bad_message_on_a_stream_ends_only_itself(strict: LiveServer) -> None:
    with grpc.insecure_channel(strict.grpc_target) as channel:
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        sent = [b"\xff\xff", infer(), infer(crops=7)]
        answers = [pb.ModelStreamInferResponse.FromString(a) for a in stream(iter(sent), timeout=60)]
    errors = sorted(a.error_message for a in answers if a.error_message)
    assert len(answers) == 3 and len(errors) == 2 and "crops" in errors[0] + errors[1]


def test_the_server_is_still_ready_and_counted_no_internal_error(
    strict: LiveServer, before: dict[tuple[str, ...], float]
) -> None:
    with grpc.insecure_channel(strict.grpc_target) as channel:
        ready = pb.ServerReadyResponse.FromString(
            channel.unary_unary("/inference.GRPCInferenceService/ServerReady")(b"", timeout=10))
    assert ready.ready
    internal = {labels: n - before.get(labels, 0.0) for labels, n in _grpc_500s().items()}
    assert not any(internal.values()), internal
