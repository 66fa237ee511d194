"""Operations endpoints: liveness, readiness (ready once every model is warm), Prometheus metrics.

Liveness fails only when the process can never serve again (a dispatch loop crashed):
that is the one state a restart fixes, so a kubelet or Compose should restart it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from service.serving import Serving

router = APIRouter(tags=["health"])


def failed(request: Request) -> JSONResponse | None:
    """The probes' 503 once the service can never serve again, else None."""
    serving: Serving | None = request.app.state.serving
    if serving is None or serving.failure is None:
        return None
    return JSONResponse({"error": str(serving.failure), "code": "failed"}, status_code=503)


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    return failed(request) or JSONResponse({"status": "live"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    # Not a dependency: a probe gets its 503 body here, not a Retry-After error from NotReady.
    serving: Serving | None = request.app.state.serving
    if serving is not None and serving.ready:
        return JSONResponse({"status": "ready", "models": serving.classifier.names})
    return failed(request) or JSONResponse({"error": "not ready", "code": "not_ready"}, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
