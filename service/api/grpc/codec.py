"""Open Inference Protocol gRPC messages <-> the tensors of service/api/v2/codec.py: ModelInferRequest in,
ModelInferResponse out.

Pure functions of protobuf messages (no server, no models), so they can be fuzzed: every malformed
request raises `BadRequest`, never anything else. Sizes are checked against the shape before any
array is made; the message itself is bounded by the server's max receive length (max_body_bytes).
Wire format: the KServe v2 gRPC protocol (grpc_predict_v2.proto), as Triton's service.proto has it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from service.api.v2.codec import (
    DTYPES,
    InferenceRequest,
    Parameters,
    RequestedOutput,
    Tensor,
    check_id,
    check_shape,
    from_binary,
    to_binary,
)
from service.errors import BadRequest

# Datatype -> the InferTensorContents field that carries it when a client sends typed contents
# (FP16 and BF16 have none: they travel as raw_input_contents only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


MALFORMED = object()  # what a message that does not parse becomes: the servicer refuses it as bad input


def lenient(message: type) -> Callable[[bytes], object]:
    """A request deserializer that never raises: grpc would answer a raising one with UNKNOWN."""

    def parse(data: bytes) -> object:
        try:
            return message.FromString(data)
        except (DecodeError, RecursionError, ValueError):
            return MALFORMED

    return parse


def parameters(raw: object, where: str) -> Parameters:
    """A protobuf map of InferParameter as the plain values of the HTTP protocol."""
    out: Parameters = {}
    for key, param in raw.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is None:
            raise BadRequest(f"{where} parameter {key!r} has no value")
        value = getattr(param, choice)
        if choice == "double_param" and not math.isfinite(value):
            raise BadRequest(f"{where} parameter {key!r} must be a finite number")
        out[key] = value
    return out


def _typed(name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    given = [f.name for f, _ in contents.ListFields()]
    if field is None or given not in ([], [field]):
        want = f"contents.{field}" if field else "raw_input_contents"
        raise BadRequest(f"input {name!r}: {datatype} data goes in {want}, got {', '.join(given)}")
    values, count = getattr(contents, field), math.prod(shape)
    if len(values) != count:  # compared before any array is made: the shape is the client's word
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} needs {count} elements, contents has {len(values)}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    dtype = DTYPES[datatype]
    # Read at the field's own width, range-checked, then narrowed (UINT8 travels in uint32 fields).
    integer = np.uint64 if field == "uint64_contents" else np.int64
    wide = np.array(values, dtype={"f": np.float64, "b": np.bool_}.get(dtype.kind, integer))
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is not None and wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise BadRequest(f"input {name!r}: a value is out of the range of {datatype}")
    with np.errstate(all="ignore"):  # FP64 -> FP32 overflow saturates, as on HTTP
        return wide.astype(dtype).reshape(shape)


def parse_infer(request: pb.ModelInferRequest) -> InferenceRequest:
    """The protocol-neutral request of a ModelInferRequest: inputs from raw_input_contents (what
    tritonclient sends) or typed contents, requested outputs with the classification extension."""
    if not request.inputs:
        raise BadRequest("inputs must be a non-empty list")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        name, datatype = tensor.name, tensor.datatype
        if datatype not in DTYPES:
            allowed = ", ".join(DTYPES)
            raise BadRequest(f"input {name!r}: datatype must be one of {allowed}, got {datatype[:32]!r}")
        shape = check_shape(list(tensor.shape), name)
        parameters(tensor.parameters, f"input {name!r}")
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
            data = from_binary(name, datatype, shape, raw[i])
        else:
            data = _typed(name, datatype, shape, tensor.contents)
        inputs.append(Tensor(name, datatype, shape, data, binary=True))  # bytes, never base64 text
    if len({t.name for t in inputs}) != len(inputs):
        raise BadRequest("an input is given twice")
    outputs = []
    for out in request.outputs:
        classes = parameters(out.parameters, f"output {out.name!r}").get("classification", 0)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise BadRequest(f"output {out.name!r}: classification must be a non-negative integer")
        outputs.append(RequestedOutput(out.name, True, classes))
    if len({o.name for o in outputs}) != len(outputs):
        raise BadRequest("an output is requested twice")
    return InferenceRequest(
        inputs, outputs or None, parameters(request.parameters, "request"), check_id(request.id or None)
    )


def encode_infer(
    model_name: str, model_version: str, request_id: str | None, outputs: list[Tensor],
    parameters: dict[str, int | bool | str] | None = None,
) -> pb.ModelInferResponse:
    """Outputs as raw_output_contents, as Triton answers (tritonclient's as_numpy reads them)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id or "")
    for key, value in (parameters or {}).items():
        if isinstance(value, bool):  # before int: a bool is an int to Python
            response.parameters[key].bool_param = value
        elif isinstance(value, str):
            response.parameters[key].string_param = value
        else:
            response.parameters[key].int64_param = value
    for t in outputs:
        response.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        response.raw_output_contents.append(to_binary(t))
    return response
