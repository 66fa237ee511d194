"""crops=/ensemble=adaptive and partial=true over /v1 and KServe v2 (HTTP and gRPC): a walk up the
Table 3 ladder (service/adaptive.py) within the request's time, and its answer at the deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from service.adaptive import Walk, WalkAnswer
from service.errors import BadRequest, DeadlineExceeded
from service.postprocess import top_k

ADAPTIVE, AUTO = "adaptive", "auto"


def check_choices(*values: object) -> bool:
    """True when a dimension is adaptive; mixing adaptive with auto is a 400 (one chooses per image
    as it goes, the other once from the deadline)."""
    adaptive = ADAPTIVE in values
    if adaptive and AUTO in values:
        raise BadRequest("adaptive and auto cannot be mixed: make crops and ensemble/models adaptive or fixed")
    return adaptive


def cut(deadline: float, budget_s: float, margin_s: float) -> float:
    """When a partial=true request answers: `margin_s` (at most a quarter of its time) before its
    deadline, so that the answer, not only its computation, is there by the deadline."""
    return deadline - min(margin_s, budget_s / 4)


async def answer(walk: Walk, work: Awaitable[WalkAnswer]) -> WalkAnswer:
    """The walk's answer; when `work` ends at the deadline, what finished (partial=true) or the 504."""
    try:
        return await work
    except DeadlineExceeded:
        if not walk.partial:
            raise
        return walk.at_deadline()


def results(answer: WalkAnswer, topk: int, labels: Sequence[tuple[str, str]]) -> list[dict]:
    """/v1 `results`: each image's top-k, evaluations, last rung and why it stopped."""
    return [
        {
            "predictions": [p.__dict__ for p in top_k(image.probabilities, topk, labels)],
            "evaluations": image.evaluations,
            "rung": image.rung,
            "stop": image.stop,
        }
        for image in answer.images
    ]


def parameters(answer: WalkAnswer) -> dict[str, int | bool | str]:
    """v2 response parameters: what ran (the most for any image), why each image stopped, partial."""
    return {
        "crops": answer.crops,
        "models": len(answer.members),
        "evaluations": answer.evaluations,
        "stop": ",".join(image.stop for image in answer.images),
        "partial": answer.partial,
    }
