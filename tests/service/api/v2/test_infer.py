"""service/api/v2/infer.py: a v2 request checked against its model before any inference, and its outputs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from service.api import call as life
from service.api.v2 import infer as v2_infer
from service.api.v2.catalog import Catalog
from service.api.v2.codec import InferenceRequest, RequestedOutput, Tensor
from service.errors import BadRequest
from service.serving import Serving, open_serving
from service.settings import Settings

LABELS = [(f"n{i:08d}", f"class {i}") for i in range(1000)]


@pytest.fixture(scope="module")
def serving(tiny_repo: Path) -> Iterator[Serving]:
    opened = open_serving(Settings(model_repository=tiny_repo, providers="cpu", instances=1))
    yield opened
    opened.classifier.close()


@pytest.fixture(scope="module")
def catalog(serving: Serving) -> Catalog:
    return Catalog(serving.repository)


def _encoded(*images: bytes, binary: bool = True, shape: tuple[int, ...] | None = None) -> Tensor:
    data = np.empty(len(images), dtype=object)
    data[:] = list(images) if binary else [base64.b64encode(i).decode() for i in images]
    shape = shape or (len(images), 1)
    return Tensor("image", "BYTES", shape, data.reshape(shape), binary)


def _crops(count: int) -> Tensor:
    return Tensor("image", "UINT8", (count, 224, 224, 3), np.zeros((count, 224, 224, 3), np.uint8), True)


Plan = Callable[..., v2_infer.InferPlan]


@pytest.fixture(scope="module")
def plan(serving: Serving, catalog: Catalog) -> Plan:
    """plan(model name, *inputs, outputs=..., max_images=4, timeout_s=30, **request parameters)."""

    def check(
        name: str, *inputs: Tensor, outputs: list[RequestedOutput] | None = None, max_images: int = 4,
        timeout_s: float = 30.0, start: float = 0.0, **parameters: object,
    ) -> v2_infer.InferPlan:
        request = InferenceRequest(list(inputs), outputs, parameters)  # type: ignore[arg-type]
        model = catalog.resolve(name)
        return v2_infer.plan(
            request, model, classifier=serving.classifier, max_images=max_images, timeout_s=timeout_s,
            call=life.Call(start),
        )

    return check


def test_an_ensemble_request_runs_every_member_once_within_the_servers_bound(plan: Plan) -> None:
    work = plan("tiny", _encoded(b"jpeg-a", b"jpeg-b"))
    assert work.images == [b"jpeg-a", b"jpeg-b"] and work.crops == 1
    assert work.members == ["tiny-0", "tiny-1", "tiny-2"] and work.mode == "1x3"
    assert work.budget_s == 30.0
    assert work.outputs == [RequestedOutput("probabilities", False, 0)]


def test_models_takes_the_first_members_of_the_ensemble(plan: Plan) -> None:
    work = plan("tiny", _encoded(b"x"), models=2, crops=10)
    assert work.members == ["tiny-0", "tiny-1"] and work.mode == "10x2"


def test_a_member_runs_alone(plan: Plan) -> None:
    assert plan("tiny-2", _encoded(b"x"), crops=144).mode == "144x1"


def test_models_out_of_range_is_a_bad_request(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="models must be between 1 and 3, got 4"):
        plan("tiny", _encoded(b"x"), models=4)


def test_models_on_a_member_is_a_bad_request(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="parameter models applies to the ensemble, not to member 'tiny-1'"):
        plan("tiny-1", _encoded(b"x"), models=1)


def test_crops_must_be_a_paper_count(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="parameter crops of model 'tiny' must be 1, 10, 144, auto or adaptive, got 5"):
        plan("tiny", _encoded(b"x"), crops=5)


def test_tensor_models_take_one_crop_only(plan: Plan) -> None:
    with pytest.raises(BadRequest, match=r"must be 1 \(the client made the crops\), got 10"):
        plan("tiny-tensor", _crops(1), crops=10)


@pytest.mark.parametrize("value", [True, "10", 1.0])
def test_integer_parameters_refuse_other_types(plan: Plan, value: object) -> None:
    with pytest.raises(BadRequest, match=f'parameter crops must be an integer, "auto" or "adaptive", got {value!r}'):
        plan("tiny", _encoded(b"x"), crops=value)
    with pytest.raises(BadRequest, match=f"parameter timeout must be an integer, got {value!r}"):
        plan("tiny", _encoded(b"x"), timeout=value)


def _auto(plan: Plan, name: str, *inputs: Tensor, timeout_s: float, **parameters: object) -> v2_infer.InferPlan:
    async def on_a_loop() -> v2_infer.InferPlan:  # the choice reads the loop's clock
        return plan(name, *inputs, timeout_s=timeout_s, start=asyncio.get_running_loop().time(), **parameters)

    return asyncio.run(on_a_loop())


def test_crops_auto_takes_the_best_rung_that_fits_and_says_so(plan: Plan, serving: Serving) -> None:
    roomy = _auto(plan, "tiny", _encoded(b"x"), timeout_s=3600.0, crops="auto")
    assert (roomy.crops, roomy.members, roomy.auto) == (144, ["tiny-0", "tiny-1", "tiny-2"], True)
    assert roomy.parameters == {"crops": 144, "models": 3, "evaluations": 432}
    tight = _auto(plan, "tiny", _encoded(b"x"), timeout_s=1e-6, crops="auto", models="auto")
    assert tight.mode == "1x1" and tight.parameters["evaluations"] == 1  # nothing fits: the cheapest
    member = _auto(plan, "tiny-2", _encoded(b"x"), timeout_s=3600.0, crops="auto")
    assert member.mode == "144x1" and member.members == ["tiny-2"]  # a member model keeps its member


def test_models_auto_holds_the_crops_asked_for(plan: Plan) -> None:
    work = _auto(plan, "tiny", _encoded(b"x"), timeout_s=3600.0, crops=10, models="auto")
    assert work.mode == "10x3" and work.parameters == {"crops": 10, "models": 3, "evaluations": 30}
    assert plan("tiny", _encoded(b"x"), crops=10).parameters == {}  # not auto: nothing to say


def test_crops_auto_on_a_tensor_model_is_a_bad_request(plan: Plan) -> None:
    with pytest.raises(BadRequest, match=r"must be 1 \(the client made the crops\), got auto"):
        plan("tiny-tensor", _crops(1), crops="auto")


def test_timeout_is_microseconds_capped_at_the_servers_bound(plan: Plan) -> None:
    assert plan("tiny", _encoded(b"x"), timeout=250_000).budget_s == 0.25
    assert plan("tiny", _encoded(b"x"), timeout=90_000_000, timeout_s=2.0).budget_s == 2.0


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_timeout_must_be_positive(plan: Plan, timeout: int) -> None:
    with pytest.raises(BadRequest, match="timeout must be a positive number of microseconds"):
        plan("tiny", _encoded(b"x"), timeout=timeout)


def test_an_unknown_input_is_named(plan: Plan) -> None:
    other = Tensor("pixels", "BYTES", (1, 1), np.array([[b"x"]], dtype=object), True)
    with pytest.raises(BadRequest, match="unknown input 'pixels': model 'tiny' has one input, 'image'"):
        plan("tiny", other)


def test_crops_sent_to_an_encoded_model_get_a_hint(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="is BYTES, got UINT8; for uint8 crops use model tiny-tensor$"):
        plan("tiny", _crops(1))


def test_images_sent_to_a_tensor_model_get_no_hint(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="input 'image' of model 'tiny-0-tensor' is UINT8, got BYTES$"):
        plan("tiny-0-tensor", _encoded(b"x"))


def test_encoded_images_may_come_as_a_flat_list(plan: Plan) -> None:
    assert plan("tiny", _encoded(b"a", b"b", shape=(2,))).images == [b"a", b"b"]


def test_a_wrong_item_shape_is_refused_with_the_expected_one(plan: Plan) -> None:
    with pytest.raises(BadRequest, match=r"has shape \[-1, 1\], got \[1, 2\]"):
        plan("tiny", _encoded(b"a", b"b", shape=(1, 2)))
    small = Tensor("image", "UINT8", (1, 112, 112, 3), np.zeros((1, 112, 112, 3), np.uint8), True)
    with pytest.raises(BadRequest, match=r"has shape \[-1, 224, 224, 3\], got \[1, 112, 112, 3\]"):
        plan("tiny-tensor", small)


def test_the_batch_must_fit_the_request_limit(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="batch dimension must be between 1 and 2, got 3"):
        plan("tiny", _encoded(b"a", b"b", b"c"), max_images=2)
    with pytest.raises(BadRequest, match="between 1 and 4, got 0"):
        plan("tiny-tensor", _crops(0))


def test_tensor_crops_are_passed_as_they_are(plan: Plan) -> None:
    crops = _crops(2)
    work = plan("tiny-1-tensor", crops)
    assert work.images is crops.data and work.members == ["tiny-1"] and work.mode == "1x1"


def test_json_images_are_base64_text(plan: Plan) -> None:
    assert plan("tiny", _encoded(b"\x00\xffimg", binary=False)).images == [b"\x00\xffimg"]


@pytest.mark.parametrize("text", ["not base64!", "caf\u00e9"])
def test_json_images_that_are_not_base64_are_refused(plan: Plan, text: str) -> None:
    tensor = Tensor("image", "BYTES", (1, 1), np.array([[text]], dtype=object), False)
    with pytest.raises(BadRequest, match="must be base64 text of encoded images"):
        plan("tiny", tensor)


def test_an_unknown_output_is_refused(plan: Plan) -> None:
    with pytest.raises(BadRequest, match="unknown output 'logits': the models have one output, 'probab"):
        plan("tiny", _encoded(b"x"), outputs=[RequestedOutput("logits")])


def test_outputs_follow_binary_data_output_unless_they_say(plan: Plan) -> None:
    asked = [RequestedOutput("probabilities", None, 3)]
    assert plan("tiny", _encoded(b"x"), outputs=asked, binary_data_output=True).outputs == [
        RequestedOutput("probabilities", True, 3)
    ]
    explicit = [RequestedOutput("probabilities", False)]
    assert plan("tiny", _encoded(b"x"), outputs=explicit, binary_data_output=True).outputs == [
        RequestedOutput("probabilities", False, 0)
    ]
    assert plan("tiny", _encoded(b"x"), binary_data_output=True).outputs == [
        RequestedOutput("probabilities", True, 0)
    ]


def _answered(plan: Plan, *outputs: RequestedOutput) -> v2_infer.InferPlan:
    return plan("tiny", _encoded(b"a", b"b"), outputs=list(outputs))


def test_probabilities_go_back_as_fp32(plan: Plan) -> None:
    probabilities = np.full((2, 1000), 0.001, np.float32)
    work = _answered(plan, RequestedOutput("probabilities", True))
    (tensor,) = v2_infer.outputs(work, probabilities, LABELS)
    assert (tensor.name, tensor.datatype, tensor.binary) == ("probabilities", "FP32", True)
    assert tensor.shape == (2, 1000)
    assert tensor.data is probabilities


def test_classification_is_the_top_k_as_probability_index_label(plan: Plan) -> None:
    probabilities = np.zeros((2, 1000), np.float32)
    probabilities[0, [7, 3, 9]] = [0.5, 0.25, 0.25]  # a tie: the lower index first
    probabilities[1, 999] = 1.0
    asked = RequestedOutput("probabilities", False, 3)
    (tensor,) = v2_infer.outputs(_answered(plan, asked), probabilities, LABELS)
    assert (tensor.datatype, tensor.shape, tensor.binary) == ("BYTES", (2, 3), False)
    assert tensor.data[0].tolist() == [b"0.500000:7:class 7", b"0.250000:3:class 3", b"0.250000:9:class 9"]
    assert tensor.data[1, 0] == b"1.000000:999:class 999"
