"""service/api/schemas.py: the /v1 response models clients parse and OpenAPI documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.api.schemas import ClassifyResponse, ErrorOut, ModelsResponse, PredictionOut, Timings
from tests.conftest import LiveServer, make_image, serve


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, models=2, instances=1) as server:
        yield server


def _prediction(**overrides: object) -> dict:
    return {"index": 3, "wnid": "n00000003", "label": "class 3", "probability": 0.5, **overrides}


def test_a_prediction_needs_every_field() -> None:
    with pytest.raises(ValidationError, match="probability"):
        PredictionOut.model_validate({"index": 1, "wnid": "", "label": "x"})


def test_a_prediction_refuses_a_non_numeric_index() -> None:
    with pytest.raises(ValidationError, match="index"):
        PredictionOut.model_validate(_prediction(index="three"))


def test_timings_need_every_stage() -> None:
    with pytest.raises(ValidationError, match="total"):
        Timings.model_validate({"preprocess": 1.0, "queue": 0.5, "inference": 2.0})


def test_an_error_is_message_and_code() -> None:
    assert ErrorOut(error="bad", code="bad_request").model_dump() == {"error": "bad", "code": "bad_request"}
    with pytest.raises(ValidationError):
        ErrorOut.model_validate({"error": "bad"})


def test_the_classify_answer_parses_as_its_schema(live: LiveServer) -> None:
    with live.client() as client:
        image, headers = make_image(96, 80), {"content-type": "image/jpeg"}
        body = client.post("/v1/classify?ensemble=true&topk=3", content=image, headers=headers).json()
    parsed = ClassifyResponse.model_validate(body)
    assert set(body) == set(ClassifyResponse.model_fields)  # nothing undocumented is sent
    assert parsed.members == ["tiny-0", "tiny-1"] and parsed.evaluations == 2 and parsed.trained is False
    assert len(parsed.predictions) == 3 and parsed.results[0].predictions == parsed.predictions


def test_the_models_answer_parses_as_its_schema(live: LiveServer) -> None:
    with live.client() as client:
        body = client.get("/v1/models").json()
    parsed = ModelsResponse.model_validate(body)
    assert set(body) == set(ModelsResponse.model_fields)
    assert parsed.primary == "tiny-0" and [m.name for m in parsed.members] == ["tiny-0", "tiny-1"]


def test_openapi_documents_the_models_and_their_descriptions(live: LiveServer) -> None:
    with live.client() as client:
        spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in (ClassifyResponse, PredictionOut, Timings, ErrorOut, ModelsResponse):
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields)
    described = {n for n, f in ClassifyResponse.model_fields.items() if f.description}
    assert {"members", "evaluations", "trained", "results"} <= described
    for name in described:
        assert schemas["ClassifyResponse"]["properties"][name]["description"]
    responses = spec["paths"]["/v1/classify"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ClassifyResponse")
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
