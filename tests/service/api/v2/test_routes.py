"""The v2 endpoints against the real server (service/api/v2/routes.py): metadata, health, inference."""

from __future__ import annotations

import base64
import gzip
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
from tritonclient.http import InferResult

from tests.conftest import LiveServer, make_image, onnx_probabilities, serve
from tests.service.api.v2.bodies import HEADER, binary_body, element, image_request


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
