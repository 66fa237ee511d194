"""The /v1 API: classify images, list the models (docs/architecture.md, README "Classify")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from service import ladder
from service.api import walks
from service.api.body import read_images
from service.api.call import Call
from service.api.deps import Loaded
from service.api.schemas import ClassifyResponse, ErrorOut, ModelsResponse
from service.crops import CROP_COUNTS
from service.errors import BadRequest

router = APIRouter(prefix="/v1", tags=["v1"])
_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 408, 413, 415, 422, 500, 503, 504)}


async def until_disconnected(request: Request) -> None:
    """Finishes when the HTTP client goes away: what `Call.run` watches to drop a request nobody reads."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _crops(value: str) -> int | None:
    """1, 10, 144, or None for auto and adaptive."""
    if value in (walks.AUTO, walks.ADAPTIVE):
        return None
    if value in map(str, CROP_COUNTS):  # compared as text: int() of 4,400 digits raises
        return int(value)
    raise BadRequest(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, auto or adaptive, got {value[:32]!r}")


def _ensemble(value: str) -> bool | None:
    """true / false (as FastAPI reads a bool), or None for auto and adaptive."""
    word = value.lower()
    if word in (walks.AUTO, walks.ADAPTIVE):
        return None
    if word in ("true", "1", "yes", "on") or word in ("false", "0", "no", "off"):
        return word in ("true", "1", "yes", "on")
    raise BadRequest(f"ensemble must be true, false, auto or adaptive, got {value[:32]!r}")


@router.post("/classify", response_model=None, responses={200: {"model": ClassifyResponse}, **_ERRORS})
async def classify(
    request: Request,
    serving: Loaded,
    crops: Annotated[str, Query(
        description="Crops per image: 1, 10 or 144 (paper section 7); auto: the most accurate "
        "configuration whose estimated completion fits the deadline (README, crops=auto); adaptive: "
        "1, then 10, then 144 crops, each image stopping once confident (README, crops=adaptive).",
    )] = "1",
    ensemble: Annotated[str, Query(
        description="true: average all ensemble members; false: the primary only; auto / adaptive: as crops.",
    )] = "false",
    models: Annotated[int | None, Query(ge=1, description="Use the first N members (overrides ensemble).")] = None,
    topk: Annotated[int, Query(ge=1, le=1000, description="Classes to return per image.")] = 5,
    deadline_ms: Annotated[float | None, Query(
        gt=0, description="Give up (504) if not answered by then; refused at once (422) if it never could be.",
    )] = None,
    partial: Annotated[bool, Query(
        description="At the deadline, answer (200, partial: true) from the rungs that finished instead of 504; "
        "a fixed mode then runs the cheaper rungs below it first.",
    )] = False,
) -> Response:
    """Classify one image (raw body) or several (multipart fields named `image`)."""
    settings, classifier, call = serving.settings, serving.classifier, _call(request)
    crop_count, use_all = _crops(crops), _ensemble(ensemble)
    adaptive_crops, adaptive_models = crops == walks.ADAPTIVE, models is None and ensemble.lower() == walks.ADAPTIVE
    adaptive = walks.check_choices(crops, ensemble.lower() if models is None else None)
    count = models if models is not None else (None if use_all is None else len(classifier.names) if use_all else 1)
    members = classifier.members(count or 1)
    auto = not adaptive and (crop_count is None or count is None)
    if not auto:  # an auto request gets its mode label once the rung is chosen
        call.mode = walks.ADAPTIVE if adaptive else f"{crop_count}x{len(members)}"
    call.limit(deadline_ms / 1000 if deadline_ms else None, settings.request_timeout_ms / 1000)
    if partial:  # answered a little early, so that the answer itself arrives in time
        call.deadline = walks.cut(call.deadline, call.budget_s, settings.partial_margin_ms / 1000)
    walking = adaptive or partial
    if not auto and not request.headers.get("content-type", "").lower().startswith("multipart/"):
        # One image: admitted before it is read, once. A walk admits each rung as it climbs, so its
        # first rung is only checked here (refused now rather than after the upload).
        if walking:
            first = ladder.climb(crops=crop_count, models=count, members=len(classifier.names), anytime=partial)[0]
            classifier.check(1, first.crops, classifier.members(first.models), deadline=call.deadline)
        else:
            call.reservation = classifier.admit(1, crop_count, members, deadline=call.deadline)
    images = await read_images(  # a stalled upload is cut at the server's bound, not the client's deadline
        request, limit=settings.max_body_bytes, max_images=settings.max_images_per_request,
        timeout_s=settings.request_timeout_ms / 1000, idle_s=settings.body_read_timeout_ms / 1000,
    )
    call.still_in_time()
    if auto:
        crop_count, members = classifier.choose(len(images), crops=crop_count, models=count, deadline=call.deadline)
        call.mode = f"{crop_count}x{len(members)}"
    gone = until_disconnected(request)
    if walking:
        walk = classifier.walk(
            images, crops=None if adaptive_crops else crop_count, models=None if adaptive_models else len(members),
            adaptive=adaptive, partial=partial, deadline=call.deadline, rule=serving.repository.stopping,
        )
        answer = await walks.answer(walk, call.run(walk.run(), gone=gone))
        per_image = walks.results(answer, topk, classifier.labels)
        return _json(ClassifyResponse(
            model=serving.repository.name, members=answer.members, crops=answer.crops,
            evaluations=answer.evaluations, auto=auto, adaptive=adaptive, partial=answer.partial,
            trained=serving.trained(answer.members), predictions=per_image[0]["predictions"], results=per_image,
            timings_ms=answer.timings_ms, request_id=request.state.request_id,
        ))
    work = classifier.classify(
        images, crops=crop_count, members=members, topk=topk, deadline=call.deadline, reservation=call.reservation
    )
    result = await call.run(work, gone=gone)
    per_image = [{"predictions": [p.__dict__ for p in preds]} for preds in result.predictions]
    return _json(ClassifyResponse(
        model=serving.repository.name,
        members=result.members,
        crops=result.crops,
        evaluations=result.evaluations,
        auto=auto,
        trained=serving.trained(result.members),
        predictions=per_image[0]["predictions"],
        results=per_image,
        timings_ms=result.timings_ms,
        request_id=request.state.request_id,
    ))


def _json(answer: ClassifyResponse) -> Response:
    # Built and checked once: FastAPI's response_model would validate and encode it a second time.
    return Response(answer.model_dump_json(), media_type="application/json")


def _call(request: Request) -> Call:
    return request.state.call


@router.get("/models", response_model=ModelsResponse)
async def list_models(serving: Loaded) -> ModelsResponse:
    """The repository being served: members, versions, file hashes, provider, batching."""
    repo, plan = serving.repository, serving.plan
    return ModelsResponse(
        name=repo.name,
        primary=repo.members[0].name,
        members=[
            {"name": m.name, "version": m.version, "precision": m.precision, "sha256": m.sha256,
             "trained": m.trained, "metadata": m.metadata}
            for m in repo.members
        ],
        provider=plan.provider,
        batching={
            "max_batch_size": plan.max_batch_size,
            "max_queue_delay_ms": plan.max_queue_delay_ms,
            "max_queue_wait_ms": plan.max_queue_wait_ms,
            "max_queue_rows": plan.max_queue_rows,
            "instances": plan.instances,
        },
    )
