"""Open Inference Protocol bodies <-> tensors: JSON and the binary tensor data extension.

Pure functions of bytes (no HTTP framework, no models), so they can be fuzzed: every malformed
body raises `BadRequest` with a message that says what is wrong, never anything else.
Wire format: docs/protocol-v2.md, after Triton's extension_binary_data.md.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import BadRequest

# Datatype -> little-endian numpy dtype (OIP "Tensor Data Types"); BYTES elements are Python bytes.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
        ("BYTES", "O"),
    )
}
MAX_DIMS = 8
MAX_ID_CHARS = 256  # the answer echoes the id: a 260 KiB one came back as 789 KiB of escaped JSON
_JSON_SLACK = 256  # commas outside tensor data: inputs, outputs, parameters, text
_LENGTH = struct.Struct("<I")  # a BYTES element: 4-byte little-endian length, then the bytes
Parameters = dict[str, str | int | float | bool]
InputCheck = Callable[[str, str, tuple[int, ...]], None]  # (name, datatype, shape); raises BadRequest


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # shaped `shape`; dtype object (bytes elements) for BYTES
    binary: bool = False  # came in the binary section (JSON can carry BYTES only as text)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: follow the request's binary_data_output
    classification: int = 0  # > 0: Triton's classification extension, top-k as "p:index:label"


@dataclass(frozen=True)
class InferenceRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None  # None: every output of the model
    parameters: Parameters = field(default_factory=dict)
    id: str | None = None

    @property
    def binary_output(self) -> bool:
        return self.parameters.get("binary_data_output") is True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parameters(raw: object, where: str) -> Parameters:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(v, (str, int, float, bool)) and not (isinstance(v, float) and not math.isfinite(v))
        for v in raw.values()
    ):
        raise BadRequest(f"{where} parameters must be an object of strings, numbers and booleans")
    return raw


def check_id(request_id: object) -> str | None:
    """The request's id, echoed in the answer: a string of at most MAX_ID_CHARS characters."""
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("id must be a string")
    if request_id is not None and len(request_id) > MAX_ID_CHARS:
        raise BadRequest(f"id has {len(request_id)} characters, more than the limit of {MAX_ID_CHARS}")
    return request_id


def check_shape(raw: object, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in raw):
        raise BadRequest(f"input {name!r}: shape must be a list of at most {MAX_DIMS} non-negative integers")
    # numpy refuses a shape whose non-zero dimensions' bytes (8 at most per element) pass its index type,
    # even with a 0 among them.
    if math.prod(d for d in raw if d) > np.iinfo(np.intp).max // 8:
        raise BadRequest(f"input {name!r}: shape {raw} is too large")
    return tuple(raw)


def _flatten(data: object, name: str) -> list[Any]:
    """Row-major elements of a nested or flat JSON array (the spec allows both)."""
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r}: data must be a JSON array")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deep array costs a loop, not the interpreter's stack
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict):
                raise BadRequest(f"input {name!r}: data elements must be numbers, booleans or strings")
            flat.append(item)
        else:
            stack.pop()
    return flat


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: object) -> np.ndarray:
    flat = _flatten(data, name)
    if len(flat) != math.prod(shape):
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} elements, data has {len(flat)}"
        )
    if datatype == "BYTES":
        if not all(isinstance(e, str) for e in flat):
            raise BadRequest(f"input {name!r}: BYTES data in JSON must be strings")
        out = np.empty(len(flat), dtype=object)
        try:
            out[:] = [e.encode() for e in flat]
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800" is valid JSON, not valid UTF-8
            raise BadRequest(f"input {name!r}: a BYTES string is not valid Unicode") from None
        return out.reshape(shape)
    dtype = DTYPES[datatype]
    try:
        values = np.array(flat)
    except (ValueError, OverflowError):
        values = np.array(flat, dtype=object)
    kinds = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}[dtype.kind]
    if values.size and values.dtype.kind not in kinds:
        raise BadRequest(f"input {name!r}: data does not hold {datatype} values")
    if values.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise BadRequest(f"input {name!r}: a value is out of the range of {datatype}")
    with np.errstate(all="ignore"):  # FP16 overflow saturates to inf, as a C cast would
        return values.astype(dtype).reshape(shape)


def _split_bytes(blob: bytes, count: int, name: str) -> np.ndarray:
    if count * _LENGTH.size > len(blob):  # checked before allocating: the shape is the client's word
        raise BadRequest(
            f"input {name!r}: {count} BYTES elements need at least {count * 4} bytes, got {len(blob)}"
        )
    out, offset = np.empty(count, dtype=object), 0
    for i in range(count):
        if offset + 4 > len(blob):
            raise BadRequest(f"input {name!r}: binary data ends inside element {i} of {count}")
        (length,) = _LENGTH.unpack_from(blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise BadRequest(
                f"input {name!r}: element {i} declares {length} bytes, {len(blob) - offset} remain"
            )
        out[i] = blob[offset : offset + length]
        offset += length
    if offset != len(blob):
        raise BadRequest(
            f"input {name!r}: {len(blob) - offset} bytes follow the last of {count} BYTES elements"
        )
    return out


def from_binary(name: str, datatype: str, shape: tuple[int, ...], blob: bytes) -> np.ndarray:
    """A tensor from its binary form: little-endian, row-major, BYTES length-prefixed."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _split_bytes(blob, count, name).reshape(shape)
    dtype = DTYPES[datatype]
    if len(blob) != count * dtype.itemsize:
        needed = count * dtype.itemsize
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {needed} bytes, got {len(blob)}"
        )
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _header_length(value: str | None, body_size: int) -> int:
    if value is None:
        return body_size  # no binary data: the whole body is JSON
    if not value.isascii() or not value.isdigit():
        raise BadRequest(f"Inference-Header-Content-Length must be a byte count, got {value[:32]!r}")
    # Compared by digits first: int() of 4,400 digits raises (Python's limit on int-from-text).
    length = int(value) if len(value.lstrip("0")) <= len(str(body_size)) else body_size + 1
    if length > body_size:
        raise BadRequest(
            f"Inference-Header-Content-Length ({value[:32]}) is larger than the body ({body_size} bytes)"
        )
    return length


def _outputs(raw: object) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw
    ):
        raise BadRequest("outputs must be a list of objects with a name")
    outputs = []
    for o in raw:
        params = _parameters(o.get("parameters"), f"output {o['name']!r}")
        binary, classes = params.get("binary_data"), params.get("classification", 0)
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"output {o['name']!r}: binary_data must be a boolean")
        if not _is_int(classes) or classes < 0:
            raise BadRequest(f"output {o['name']!r}: classification must be a non-negative integer")
        outputs.append(RequestedOutput(o["name"], binary, classes))
    if len({o.name for o in outputs}) != len(outputs):
        raise BadRequest("an output is requested twice")
    return outputs


def parse_request(
    body: bytes, header_length: str | None, *, check: InputCheck | None = None, max_values: int | None = None
) -> InferenceRequest:
    """Parse a JSON inference request, with binary tensor data after the JSON when
    `header_length` (the Inference-Header-Content-Length header) is given. `check` sees each
    input's name, datatype and shape before any of its data is built; `max_values` bounds the JSON's
    values before it is parsed (a comma count: json.loads holds the GIL, ~1.4 s for 10M values)."""
    split = _header_length(header_length, len(body))
    if max_values is not None and body.count(b",", 0, split) > max_values + _JSON_SLACK:
        raise BadRequest(
            f"the JSON holds more values than any request to this model can ({max_values}); "
            "send tensors in the binary form"
        )
    try:
        doc = json.loads(body[:split])
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, or an integer past Python's 4,300 digits
        raise BadRequest(f"the inference request header is not valid JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise BadRequest("the inference request header is not valid JSON: nested too deep") from None
    if not isinstance(doc, dict):
        raise BadRequest("the inference request must be a JSON object")
    request_id = check_id(doc.get("id"))
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs or not all(isinstance(i, dict) for i in raw_inputs):
        raise BadRequest("inputs must be a non-empty list of objects")
    binary, offset, inputs = memoryview(body)[split:], 0, []
    for raw in raw_inputs:
        name, datatype = raw.get("name"), raw.get("datatype")
        if not isinstance(name, str):
            raise BadRequest("every input needs a name")
        if not isinstance(datatype, str) or datatype not in DTYPES:
            raise BadRequest(f"input {name!r}: datatype must be one of {', '.join(DTYPES)}, got {datatype!r}")
        shape = check_shape(raw.get("shape"), name)
        if check is not None:
            check(name, datatype, shape)
        size = _parameters(raw.get("parameters"), f"input {name!r}").get("binary_data_size")
        if size is None:
            if "data" not in raw:
                raise BadRequest(f"input {name!r} has neither data nor parameters.binary_data_size")
            inputs.append(Tensor(name, datatype, shape, _from_json(name, datatype, shape, raw["data"])))
            continue
        if not _is_int(size) or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            remain = len(binary) - offset
            raise BadRequest(
                f"input {name!r}: binary_data_size is {size} but {remain} bytes of binary data remain"
            )
        blob = bytes(binary[offset : offset + size])
        offset += size
        inputs.append(Tensor(name, datatype, shape, from_binary(name, datatype, shape, blob), binary=True))
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data follow the inputs' binary_data_size total"
        )
    if len({t.name for t in inputs}) != len(inputs):
        raise BadRequest("an input is given twice")
    params = _parameters(doc.get("parameters"), "request")
    if not isinstance(params.get("binary_data_output", False), bool):
        raise BadRequest("binary_data_output must be a boolean")
    return InferenceRequest(inputs, _outputs(doc.get("outputs")), params, request_id)


def raw_request(body: bytes, name: str, datatype: str, item_shape: tuple[int, ...]) -> InferenceRequest:
    """Triton's raw binary request (Inference-Header-Content-Length: 0): the body is the one
    input of one batch item; a BYTES input takes the whole body as its single element."""
    shape = (1, *item_shape)
    if datatype == "BYTES":
        if math.prod(shape) != 1:
            raise BadRequest(f"a raw binary request to a BYTES input needs shape [1], not {list(shape)}")
        data = np.empty(shape, dtype=object)
        data.flat[0] = body
    else:
        data = from_binary(name, datatype, shape, body)
    return InferenceRequest(
        [Tensor(name, datatype, shape, data, binary=True)], None, {"binary_data_output": True}
    )


def to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(e)) + e for e in tensor.data.ravel())
    return np.ascontiguousarray(tensor.data, dtype=DTYPES[tensor.datatype]).tobytes()


def encode_response(
    model_name: str, model_version: str | None, request_id: str | None, outputs: list[Tensor],
    parameters: Parameters | None = None,
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length
    (the value of the Inference-Header-Content-Length response header)."""
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    entries, blobs = [], []
    for t in outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if t.binary:
            blobs.append(to_binary(t))
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        elif t.datatype == "BYTES":
            entry["data"] = [e.decode("utf-8", "replace") for e in t.data.ravel()]
        else:
            entry["data"] = t.data.ravel().tolist()
        entries.append(entry)
    doc["outputs"] = entries
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
