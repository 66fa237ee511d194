"""Operations endpoints: liveness, readiness (ready once every model is warm), Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service.serving import Serving

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "live"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    # Not a dependency: a probe gets its 503 body here, not a Retry-After error from NotReady.
    serving: Serving | None = request.app.state.serving
    if serving is not None and serving.ready:
        return JSONResponse({"status": "ready", "models": serving.classifier.names})
    return JSONResponse({"error": "not ready", "code": "not_ready"}, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
