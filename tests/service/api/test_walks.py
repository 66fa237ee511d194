"""crops=/ensemble=adaptive and partial=true on the real server: /v1, KServe v2 over HTTP (tritonclient)
and gRPC (tritonclient.grpc), with the repository's adaptive.json (service/stopping.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as triton

from loadtest.servers import free_port
from service.api import walks
from tests.conftest import LiveServer, make_image, metric, serve
from tests.reliability.slow_model import write_slow_repository
from tests.tiny_models import write_repository

JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Calibrated so that the 1x1 rung stops every image and no other rung stops any: both ends show.
    repo = write_repository(tmp_path_factory.mktemp("adaptive") / "repo", members=3)
    (repo / "adaptive.json").write_text(json.dumps({"rule": "margin", "thresholds": {"1x1": 0.0}, "default": 2.0}))
    with serve(repo, max_batch_size=8, instances=2, grpc_port=free_port()) as server:
        yield server


def classify(live: LiveServer, data: bytes, **params: object) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/classify", params=params, content=data, headers=JPEG, timeout=60)


def probabilities(body: dict, image: int = 0) -> np.ndarray:
    out = np.zeros(1000)
    for p in body["results"][image]["predictions"]:
        out[p["index"]] = p["probability"]
    return out


def test_a_confident_image_stops_at_one_evaluation(live: LiveServer) -> None:
    before = metric(live.url, "googlenet_walk_stops_total", mode="adaptive", reason="confident")
    body = classify(live, make_image(seed=1), crops="adaptive", ensemble="adaptive").json()
    assert (body["adaptive"], body["partial"], body["auto"]) == (True, False, False)
    assert (body["crops"], body["members"], body["evaluations"]) == (1, ["tiny-0"], 1)
    assert {k: body["results"][0][k] for k in ("evaluations", "rung", "stop")} == {
        "evaluations": 1, "rung": "1x1", "stop": "confident"}
    assert metric(live.url, "googlenet_walk_stops_total", mode="adaptive", reason="confident") == before + 1
    assert metric(live.url, "googlenet_requests_total", mode="adaptive", route="/v1/classify", status="200") >= 1


def test_a_walk_to_the_top_answers_as_the_fixed_mode(live: LiveServer) -> None:
    image = make_image(330, 250, seed=2)
    # Adaptive crops with every member: rungs 1x3, 10x3, 144x3, none of them calibrated to stop.
    walked = classify(live, image, crops="adaptive", ensemble="true", topk=1000).json()
    fixed = classify(live, image, crops=144, ensemble="true", topk=1000).json()
    assert walked["results"][0]["stop"] == "last_rung" and walked["results"][0]["rung"] == "144x3"
    assert walked["evaluations"] == fixed["evaluations"] == 432 and walked["members"] == fixed["members"]
    np.testing.assert_allclose(probabilities(walked), probabilities(fixed), atol=1e-6, rtol=0)
    assert fixed["adaptive"] is False and fixed["results"][0]["stop"] is None  # the fixed answer as before


def test_images_of_one_request_each_say_where_they_stopped(live: LiveServer) -> None:
    files = [("image", (f"{i}.jpg", make_image(seed=i), "image/jpeg")) for i in range(3)]
    body = httpx.post(f"{live.url}/v1/classify", params={"crops": "adaptive", "ensemble": "adaptive"},
                      files=files, timeout=60).json()
    assert [r["evaluations"] for r in body["results"]] == [1, 1, 1]
    assert body["predictions"] == body["results"][0]["predictions"]


def test_partial_on_a_fixed_mode_with_time_to_spare_is_the_fixed_answer(live: LiveServer) -> None:
    image = make_image(seed=4)
    anytime = classify(live, image, crops=10, ensemble="true", partial="true", topk=1000).json()
    fixed = classify(live, image, crops=10, ensemble="true", topk=1000).json()
    assert (anytime["partial"], anytime["adaptive"], anytime["evaluations"]) == (False, False, 30)
    assert anytime["results"][0]["rung"] == "10x3"  # after 1x1 and 1x3
    np.testing.assert_allclose(probabilities(anytime), probabilities(fixed), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("params", "message"), [
    ({"crops": "auto", "ensemble": "adaptive"}, "adaptive and auto cannot be mixed"),
    ({"crops": "adaptive", "ensemble": "auto"}, "adaptive and auto cannot be mixed"),
    ({"crops": "maybe"}, "crops must be one of 1, 10, 144, auto or adaptive"),
    ({"ensemble": "maybe"}, "ensemble must be true, false, auto or adaptive"),
    ({"crops": "adaptive", "partial": "perhaps"}, "partial"),
])
def test_bad_choices_are_400s_or_422s_that_say_why(live: LiveServer, params: dict, message: str) -> None:
    response = classify(live, make_image(), **params)
    assert response.status_code in (400, 422) and message in response.text


def test_v2_http_takes_adaptive_and_partial_as_parameters(live: LiveServer) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    tensor = triton.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[make_image(seed=5)]], dtype=object))
    result = client.infer("tiny", [tensor], parameters={"crops": "adaptive", "models": "adaptive"})
    assert result.get_response()["parameters"] == {
        "crops": 1, "models": 1, "evaluations": 1, "stop": "confident", "partial": False}
    assert int(np.argmax(result.as_numpy("probabilities"))) == classify(
        live, make_image(seed=5), topk=1).json()["predictions"][0]["index"]  # 1x1: the primary, 1 crop
    top = client.infer("tiny", [tensor], parameters={"crops": 10, "partial": True})
    assert top.get_response()["parameters"]["evaluations"] == 30
    with pytest.raises(triton.InferenceServerException, match="parameter partial must be a boolean"):
        client.infer("tiny", [tensor], parameters={"crops": 10, "partial": "yes"})
    client.close()


def test_grpc_takes_adaptive_and_partial_as_parameters(live: LiveServer) -> None:
    client = tgrpc.InferenceServerClient(live.grpc_target)
    tensor = tgrpc.InferInput("image", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[make_image(seed=6)]], dtype=object))
    result = client.infer("tiny", [tensor], parameters={"crops": "adaptive", "models": 3})
    params = result.get_response().parameters
    assert (params["crops"].int64_param, params["models"].int64_param) == (144, 3)
    assert (params["stop"].string_param, params["partial"].bool_param) == ("last_rung", False)
    member = client.infer("tiny-2", [tensor], parameters={"crops": "adaptive"})  # a member walks its crops
    assert member.get_response().parameters["evaluations"].int64_param == 1
    client.close()


def test_tensor_models_walk_the_members(live: LiveServer) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    tensor = triton.InferInput("image", [2, 224, 224, 3], "UINT8")
    tensor.set_data_from_numpy(np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8))
    result = client.infer("tiny-tensor", [tensor], parameters={"models": "adaptive"})
    assert result.get_response()["parameters"]["stop"] == "confident,confident"
    with pytest.raises(triton.InferenceServerException, match="the client made the crops"):
        client.infer("tiny-tensor", [tensor], parameters={"crops": "adaptive"})
    client.close()


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One member of ~400 M multiply-adds per row: one crop fits a second, 144 do not on any CPU.
    repo = write_slow_repository(tmp_path_factory.mktemp("slow") / "repo", layers=400)
    with serve(repo, instances=1, max_batch_size=2) as server:
        yield server


def test_partial_answers_at_the_deadline_with_what_finished(slow: LiveServer) -> None:
    before = metric(slow.url, "googlenet_partial_answers_total", mode="anytime")
    body = classify(slow, make_image(seed=7), crops=144, partial="true", deadline_ms=1500).json()
    assert body["partial"] is True and body["crops"] < 144
    (image,) = body["results"]
    assert image["stop"] in ("no_time", "deadline") and image["evaluations"] in (1, 10)
    assert metric(slow.url, "googlenet_partial_answers_total", mode="anytime") == before + 1
    refused = classify(slow, make_image(seed=7), crops=144, deadline_ms=1500)  # the same, without partial
    assert refused.status_code in (422, 503, 504)


def test_the_answer_margin_is_a_quarter_of_a_short_budget() -> None:
    assert walks.cut(10.0, budget_s=0.1, margin_s=0.05) == pytest.approx(9.975)
    assert walks.cut(10.0, budget_s=2.0, margin_s=0.05) == pytest.approx(9.95)
