"""How handlers reach the serving object: one FastAPI dependency, so the request path
api -> classifier -> batching -> runtime is visible in the imports, and tests can swap it with
`app.dependency_overrides`. The dependencies are coroutines: FastAPI would run a plain function in
its thread pool, a thread hop on every request for two attribute reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import NotReady
from service.serving import Serving


async def loaded(request: Request) -> Serving:
    """The serving object once the models are warm (also while draining: accepted work finishes)."""
    serving: Serving | None = request.app.state.serving
    if serving is None:
        raise NotReady("the models are still loading", headers={"Retry-After": "1"})
    return serving


async def ready(serving: Annotated[Serving, Depends(loaded)]) -> Serving:
    """The serving object while it takes new work: not loading, not draining."""
    if not serving.serves:
        raise NotReady("the service is not ready (loading or shutting down)", headers={"Retry-After": "1"})
    return serving


Loaded = Annotated[Serving, Depends(loaded)]
Ready = Annotated[Serving, Depends(ready)]
