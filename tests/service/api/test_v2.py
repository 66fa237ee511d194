"""The v2 protocol: the codec on its own (with fuzzing), then every endpoint against the real server."""

from __future__ import annotations

import base64
import gzip
import json
import os
import struct
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.http import InferResult

from service.api.v2_codec import InferenceRequest, Tensor, encode_response, parse_request, raw_request
from service.errors import BadRequest
from tests.conftest import LiveServer, make_image, serve

HEADER = "Inference-Header-Content-Length"


def element(data: bytes) -> bytes:
    """One BYTES element of the binary extension: 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(data)) + data


def binary_body(doc: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(doc).encode()
    return header + b"".join(blobs), {HEADER: str(len(header)), "content-type": "application/octet-stream"}


def image_request(data: bytes, *, size: int | None = None, **params: object) -> tuple[bytes, dict[str, str]]:
    blob = element(data)
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": len(blob) if size is None else size},
            }
        ],
        "parameters": params,
    }
    return binary_body(doc, blob)


def onnx_probabilities(repo: Path, members: list[str], rows: np.ndarray) -> np.ndarray:
    outputs = [
        ort.InferenceSession(str(repo / m / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        .run(["probabilities"], {"image": rows})[0]
        .astype(np.float64)
        for m in members
    ]
    return np.mean(outputs, axis=0)


# --- the codec alone ---------------------------------------------------------------------------


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
            {"name": "x", "datatype": "BYTES", "shape": [2**40, 2**30], "parameters": {"binary_data_size": 4}}
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


# --- the endpoints, on the real server -----------------------------------------------------------


def test_server_metadata_and_health(server: LiveServer) -> None:
    with server.client() as client:
        meta = client.get("/v2").json()
        assert "binary_tensor_data" in meta["extensions"] and meta["name"] and meta["version"]
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "platform"),
    [
        ("tiny", "BYTES", [-1, 1], "ensemble"),
        ("tiny-2", "BYTES", [-1, 1], "onnxruntime_onnx"),
        ("tiny-tensor", "UINT8", [-1, 224, 224, 3], "ensemble"),
        ("tiny-0-tensor", "UINT8", [-1, 224, 224, 3], "onnxruntime_onnx"),
    ],
)
def test_every_model_has_metadata_readiness_and_a_config(
    server: LiveServer, name: str, datatype: str, shape: list[int], platform: str
) -> None:
    with server.client() as client:
        meta = client.get(f"/v2/models/{name}").json()
        assert meta["inputs"] == [{"name": "image", "datatype": datatype, "shape": shape}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]
        assert meta["platform"] == platform and meta["versions"] == ["1"]
        assert client.get(f"/v2/models/{name}/versions/1").json() == meta
        assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
        config = client.get(f"/v2/models/{name}/versions/1/config").json()
    assert config["max_batch_size"] == server.settings.max_images_per_request
    assert config["input"][0]["name"] == "image" and config["input"][0]["dims"] == shape[1:]
    assert config["output"][0]["dims"] == [1000]
    if platform == "ensemble":
        suffix = "-tensor" if datatype == "UINT8" else ""
        assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == [
            f"tiny-{i}{suffix}" for i in range(3)
        ]
    else:
        assert "dynamic_batching" in config and config["instance_group"][0]["kind"] == "KIND_CPU"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/tiny/versions/2",
        "/v2/models/nope/ready",
        "/v2/models/tiny-0/versions/9/config",
    ],
)
def test_unknown_models_and_versions_are_json_404s(server: LiveServer, path: str) -> None:
    response = httpx.get(server.url + path)
    assert response.status_code == 404 and response.json()["error"]


def test_uint8_crops_give_exactly_what_onnx_runtime_gives(server: LiveServer, tiny_repo: Path) -> None:
    rows = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "UINT8",
                "shape": [2, 224, 224, 3],
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(doc, rows.tobytes())
    json_doc = {
        "inputs": [
            {"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": rows[:1].tolist()}
        ]
    }
    with server.client() as client:
        member = client.post("/v2/models/tiny-1-tensor/infer", content=body, headers=headers)
        ensemble = client.post("/v2/models/tiny-tensor/infer", content=body, headers=headers)
        as_json = client.post("/v2/models/tiny-tensor/infer", json=json_doc)
    for response, members, count in ((member, ["tiny-1"], 2), (ensemble, ["tiny-0", "tiny-1", "tiny-2"], 2)):
        assert response.status_code == 200, response.text
        result = InferResult.from_response_body(response.content, header_length=int(response.headers[HEADER]))
        got = result.as_numpy("probabilities")
        assert got.shape == (count, 1000)
        np.testing.assert_allclose(got, onnx_probabilities(tiny_repo, members, rows), atol=1e-6)
    assert as_json.status_code == 200 and HEADER not in as_json.headers
    out = as_json.json()["outputs"][0]
    assert out["shape"] == [1, 1000] and "parameters" not in out  # perf_analyzer reads JSON outputs this way
    np.testing.assert_allclose(
        np.array(out["data"]),
        onnx_probabilities(tiny_repo, ["tiny-0", "tiny-1", "tiny-2"], rows[:1])[0],
        atol=1e-6,
    )


def test_encoded_images_answer_as_v1_does_in_every_body_form(server: LiveServer) -> None:
    jpeg = make_image(300, 200, seed=11)
    with server.client() as client:
        v1 = client.post(
            "/v1/classify",
            params={"crops": 10, "models": 2, "topk": 1000},
            content=jpeg,
            headers={"content-type": "image/jpeg"},
        ).json()
        expected = np.zeros(1000)
        for p in v1["predictions"]:
            expected[p["index"]] = p["probability"]
        body, headers = image_request(jpeg, crops=10, models=2)
        binary = client.post("/v2/models/tiny/infer", content=body, headers=headers)
        compressed = client.post(
            "/v2/models/tiny/infer",
            content=gzip.compress(body),
            headers={**headers, "content-encoding": "gzip"},
        )
        as_json = client.post(
            "/v2/models/tiny/infer",
            json={
                "id": "j1",
                "parameters": {"crops": 10, "models": 2},
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(jpeg).decode()],
                    }
                ],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
            },
        )
        single = client.post(
            "/v2/models/tiny-0/infer", content=jpeg, headers={HEADER: "0"}
        )  # raw binary request
        v1_single = client.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"}).json()
    for response in (binary, compressed):
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]  # no binary output asked for: plain JSON
        assert out["datatype"] == "FP32" and out["shape"] == [1, 1000]
        np.testing.assert_allclose(out["data"], expected, atol=1e-6)
    top = as_json.json()
    assert top["id"] == "j1" and top["model_name"] == "tiny" and top["outputs"][0]["shape"] == [1, 3]
    best = np.argsort(-expected)[:3]
    assert [int(s.split(":")[1]) for s in top["outputs"][0]["data"]] == best.tolist()
    assert top["outputs"][0]["data"][0].endswith(f":class {best[0]}")
    assert single.status_code == 200 and single.headers["content-type"] == "application/octet-stream"
    got = InferResult.from_response_body(single.content, header_length=int(single.headers[HEADER]))
    assert int(got.as_numpy("probabilities")[0].argmax()) == v1_single["predictions"][0]["index"]


def _bad_requests() -> list[object]:
    """(case, model, body, headers, what the message says): every one must be a JSON 400."""
    jpeg = make_image(64, 48, seed=5)
    ok_body, ok_headers = image_request(jpeg)
    blob = element(jpeg)
    cases = [
        (
            "header longer than the body",
            "tiny",
            ok_body,
            {**ok_headers, HEADER: str(len(ok_body) + 1)},
            "larger than the body",
        ),
        ("header not a number", "tiny", ok_body, {**ok_headers, HEADER: "12x"}, "byte count"),
        ("header cuts the JSON", "tiny", ok_body, {**ok_headers, HEADER: "10"}, "not valid JSON"),
        (
            "binary_data_size too large",
            "tiny",
            *image_request(jpeg, size=len(blob) + 1),
            "bytes of binary data remain",
        ),
        (
            "binary_data_size too small",
            "tiny",
            *image_request(jpeg, size=len(blob) - 1),
            "element 0 declares",
        ),
        ("bytes after the inputs", "tiny", ok_body + b"tail", ok_headers, "follow the inputs"),
        (
            "element length past the end",
            "tiny",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [1, 1],
                            "parameters": {"binary_data_size": 8},
                        }
                    ]
                },
                struct.pack("<I", 1000) + b"abcd",
            ),
            "declares 1000 bytes",
        ),
        (
            "unknown input name",
            "tiny",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "picture",
                            "datatype": "BYTES",
                            "shape": [1, 1],
                            "parameters": {"binary_data_size": len(blob)},
                        }
                    ]
                },
                blob,
            ),
            "unknown input 'picture'",
        ),
        (
            "wrong datatype",
            "tiny",
            *binary_body({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}),
            "is BYTES, got FP32; for uint8 crops use model tiny-tensor",
        ),
        ("bytes to the tensor model", "tiny-0-tensor", ok_body, ok_headers, "is UINT8, got BYTES"),
        (
            "shape and data disagree (JSON)",
            "tiny-0-tensor",
            *binary_body(
                {
                    "inputs": [
                        {"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": [1, 2, 3]}
                    ]
                }
            ),
            "needs 150528 elements, data has 3",
        ),
        (
            "shape and data disagree (binary)",
            "tiny-0-tensor",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "UINT8",
                            "shape": [1, 224, 224, 3],
                            "parameters": {"binary_data_size": 100},
                        }
                    ]
                },
                bytes(100),
            ),
            "needs 150528 bytes, got 100",
        ),
        (
            "shape not the model's",
            "tiny-0-tensor",
            *binary_body(
                {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}]}
            ),
            "has shape [-1, 224, 224, 3]",
        ),
        (
            "empty batch",
            "tiny",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [0, 1],
                            "parameters": {"binary_data_size": 0},
                        }
                    ]
                }
            ),
            "between 1 and",
        ),
        (
            "too many images",
            "tiny",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [17, 1],
                            "parameters": {"binary_data_size": 17 * len(blob)},
                        }
                    ]
                },
                blob * 17,
            ),
            "between 1 and 16",
        ),
        (
            "unknown output",
            "tiny",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [1],
                            "parameters": {"binary_data_size": len(blob)},
                        }
                    ],
                    "outputs": [{"name": "logits"}],
                },
                blob,
            ),
            "unknown output 'logits'",
        ),
        ("crops not in the paper", "tiny", *image_request(jpeg, crops=5), "must be 1, 10, 144"),
        (
            "crops on the tensor model",
            "tiny-tensor",
            *binary_body(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "UINT8",
                            "shape": [1, 224, 224, 3],
                            "parameters": {"binary_data_size": 150528},
                        }
                    ],
                    "parameters": {"crops": 10},
                },
                bytes(150528),
            ),
            "the client made the crops",
        ),
        ("models on a member", "tiny-1", *image_request(jpeg, models=2), "applies to the ensemble"),
        ("too many members", "tiny", *image_request(jpeg, models=4), "between 1 and 3"),
        ("non-integer timeout", "tiny", *image_request(jpeg, timeout="soon"), "must be an integer"),
        (
            "JSON bytes not base64",
            "tiny",
            *binary_body(
                {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]}
            ),
            "base64",
        ),
        ("raw body to a tensor model", "tiny-0-tensor", b"abc", {HEADER: "0"}, "needs 150528 bytes, got 3"),
        ("not JSON", "tiny", b"\x89PNG....", {"content-type": "application/json"}, "not valid JSON"),
    ]
    return [
        pytest.param(model, body, headers, message, id=case) for case, model, body, headers, message in cases
    ]


@pytest.mark.parametrize(("model", "body", "headers", "message"), _bad_requests())
def test_malformed_requests_are_json_400s(
    server: LiveServer, model: str, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = httpx.post(f"{server.url}/v2/models/{model}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_undecodable_images_and_unknown_encodings_get_their_own_statuses(server: LiveServer) -> None:
    with server.client() as client:
        undecodable = client.post("/v2/models/tiny/infer", content=b"not an image", headers={HEADER: "0"})
        encoding = client.post("/v2/models/tiny/infer", content=b"{}", headers={"content-encoding": "br"})
        corrupt = client.post(
            "/v2/models/tiny/infer", content=b"\x1f\x8b junk", headers={"content-encoding": "gzip"}
        )
        after = client.post("/v2/models/tiny/infer", content=make_image(seed=2), headers={HEADER: "0"})
    assert undecodable.status_code == 422 and undecodable.json()["code"] == "invalid_image"
    assert encoding.status_code == 415 and "gzip" in encoding.json()["error"]
    assert corrupt.status_code == 400 and corrupt.json()["error"]
    assert after.status_code == 200  # none of the above cost the server anything


def test_body_limits_hold_for_plain_and_compressed_bodies(tiny_repo: Path) -> None:
    with (
        serve(tiny_repo, max_body_bytes=4096, max_batch_size=2, instances=1) as live,
        live.client() as client,
    ):
        big = client.post("/v2/models/tiny/infer", content=bytes(5000), headers={HEADER: "0"})
        bomb = client.post(
            "/v2/models/tiny/infer",
            content=gzip.compress(bytes(1 << 20)),
            headers={"content-encoding": "gzip"},
        )
    assert big.status_code == 413 and big.json()["error"]
    assert bomb.status_code == 413 and "decompressed" in bomb.json()["error"]
