"""The v2 codec on its own (service/api/v2/codec.py): parsing, encoding, fuzzing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.http import InferResult

from service.api.v2.codec import InferenceRequest, Tensor, encode_response, parse_request, raw_request
from service.errors import BadRequest
from tests.service.api.v2.bodies import HEADER, binary_body, element


def test_binary_inputs_of_every_kind_parse_back_to_the_same_tensors() -> None:
    floats = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    flags = np.array([True, False, True])
    strings = [b"", b"\x00\xffjpeg", b"x" * 300]
    doc = {
        "id": "r1",
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
            {"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}},
            {
                "name": "c",
                "datatype": "BYTES",
                "shape": [3, 1],
                "parameters": {"binary_data_size": sum(4 + len(s) for s in strings)},
            },
            {"name": "d", "datatype": "INT16", "shape": [2, 2], "data": [[1, -2], [3, 32767]]},
        ],
        "outputs": [{"name": "p", "parameters": {"binary_data": True, "classification": 3}}],
    }
    body, headers = binary_body(doc, floats.tobytes(), flags.tobytes(), b"".join(element(s) for s in strings))
    parsed = parse_request(body, headers[HEADER])
    a, b, c, d = parsed.inputs
    assert parsed.id == "r1" and [t.binary for t in parsed.inputs] == [True, True, True, False]
    np.testing.assert_array_equal(a.data, floats)
    np.testing.assert_array_equal(b.data, flags)
    assert c.shape == (3, 1) and list(c.data.ravel()) == strings
    assert d.data.dtype == np.int16 and d.data.tolist() == [[1, -2], [3, 32767]]
    assert parsed.outputs[0].binary is True and parsed.outputs[0].classification == 3


def test_nested_and_flat_json_data_are_the_same_tensor() -> None:
    nested = parse_request(
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
        ).encode(),
        None,
    )
    flat = parse_request(
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
        ).encode(),
        None,
    )
    np.testing.assert_array_equal(nested.inputs[0].data, flat.inputs[0].data)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2], "data": [1, 256]}]},
            "out of the range",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2], "data": [1, 2.5]}]},
            "does not hold UINT8",
        ),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["1"]}]}, "does not hold FP32"),
        ({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}]}, "does not hold BOOL"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "must be strings"),
        (
            {"inputs": [{"name": "x", "datatype": "BF17", "shape": [1], "data": [1]}]},
            "datatype must be one of",
        ),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": []}]}, "non-negative"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2**40, 0, 2**40], "data": []}]}, "too large"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither data nor"),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [{"a": 1}]}]},
            "must be numbers",
        ),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}] * 2}, "given twice"),
        ({"inputs": []}, "non-empty list"),
        (
            {"id": 7, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
            "id must be a string",
        ),
        (
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "outputs": [{"name": "p"}] * 2,
            },
            "requested twice",
        ),
        (
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "parameters": {"binary_data_output": "yes"},
            },
            "must be a boolean",
        ),
    ],
)
def test_malformed_json_requests_say_what_is_wrong(doc: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request(json.dumps(doc).encode(), None)


def test_a_lone_surrogate_in_a_json_string_is_a_bad_request() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}'
    with pytest.raises(BadRequest, match="not valid Unicode"):
        parse_request(body, None)


def test_a_deeply_nested_array_is_a_bad_request_not_a_crash() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ' + b"[" * 100_000
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_request(body, None)
    deep = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    for _ in range(500):  # parsable by json, still flattened without recursion
        deep["inputs"][0]["data"] = [deep["inputs"][0]["data"]]
    assert parse_request(json.dumps(deep).encode(), None).inputs[0].data.tolist() == [1.0]


def test_a_raw_binary_request_is_one_batch_item() -> None:
    parsed = raw_request(b"\xff\xd8jpeg", "image", "BYTES", (1,))
    assert parsed.inputs[0].shape == (1, 1) and parsed.inputs[0].data[0, 0] == b"\xff\xd8jpeg"
    assert parsed.binary_output
    with pytest.raises(BadRequest, match="needs 150528 bytes, got 3"):
        raw_request(b"abc", "image", "UINT8", (224, 224, 3))


def test_binary_responses_parse_with_the_reference_client() -> None:
    probs = np.random.default_rng(0).random((2, 1000), dtype=np.float32)
    labels = np.array([[b"0.9:1:cat", b"0.1:0:dog"]] * 2, dtype=object)
    outputs = [
        Tensor("probabilities", "FP32", probs.shape, probs, binary=True),
        Tensor("top", "BYTES", labels.shape, labels, binary=True),
    ]
    body, header_length = encode_response("m", "3", "req-9", outputs)
    result = InferResult.from_response_body(body, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)
    assert result.as_numpy("top").tolist() == labels.tolist()
    assert result.get_response()["id"] == "req-9" and result.get_response()["model_version"] == "3"
    json_body, none = encode_response("m", None, None, [Tensor("p", "FP32", (1, 2), probs[:1, :2])])
    assert none is None and json.loads(json_body)["outputs"][0]["data"] == probs[0, :2].tolist()


def _check_parse(body: bytes, header: str | None) -> None:
    try:
        parsed = parse_request(body, header)
    except BadRequest as exc:
        assert exc.status == 400 and exc.message
    else:
        assert isinstance(parsed, InferenceRequest) and parsed.inputs


def test_a_huge_declared_shape_costs_nothing_before_it_is_refused() -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "BYTES", "shape": [2**30, 2**28], "parameters": {"binary_data_size": 4}}
        ]
    }
    body, headers = binary_body(doc, bytes(4))
    with pytest.raises(BadRequest, match="need at least"):
        parse_request(body, headers[HEADER])


# FUZZ_EXAMPLES=20000 for a longer hunt than the CI-sized default.
_FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_FUZZ
@given(st.binary(max_size=512), st.one_of(st.none(), st.integers(0, 600).map(str), st.text(max_size=8)))
def test_fuzzed_bodies_are_parsed_or_refused_with_bad_request(body: bytes, header: str | None) -> None:
    _check_parse(body, header)


@_FUZZ
@given(
    st.sampled_from(["BYTES", "UINT8", "FP32", "INT64", "BOOL", "FP16"]),
    st.lists(st.integers(0, 4), max_size=3),
    st.integers(-2, 40),
    st.binary(max_size=48),
    st.integers(-3, 3),
)
def test_fuzzed_binary_sections_are_parsed_or_refused(
    datatype: str, shape: list[int], size: int, blob: bytes, header_shift: int
) -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}
        ]
    }
    header = json.dumps(doc).encode()
    _check_parse(header + blob, str(len(header) + header_shift))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@_FUZZ
@given(
    datatype=_JSON | st.sampled_from(["BYTES", "UINT8", "FP16", "BOOL", "INT64"]),
    shape=_JSON | st.lists(st.integers(0, 2**40), max_size=3),
    data=_JSON,
    parameters=_JSON | st.fixed_dictionaries({"binary_data_size": st.integers(-1, 9)}),
    outputs=_JSON,
    request=_JSON,
    tail=st.binary(max_size=16),
)
def test_fuzzed_json_documents_are_parsed_or_refused(
    datatype: object,
    shape: object,
    data: object,
    parameters: object,
    outputs: object,
    request: object,
    tail: bytes,
) -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": datatype, "shape": shape, "data": data, "parameters": parameters}
        ],
        "outputs": outputs,
        "parameters": request,
    }
    header = json.dumps(doc).encode()
    _check_parse(header + tail, str(len(header)))


