"""A burst: `count` requests sent at once, modes drawn in turn from a list, every answer's status
and server-side timings kept. What an idle service must absorb without shedding (503) or failing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np

from loadtest.mix import Mode


async def _burst(url: str, images: list[bytes], modes: list[str], count: int, timeout_s: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    chosen = [Mode.parse(m) for m, _ in zip(itertools.cycle(modes), range(count), strict=False)]
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        gate = asyncio.Event()

        async def one(i: int) -> tuple[int, float, dict[str, Any] | None]:
            mode = chosen[i]
            await gate.wait()
            started = time.perf_counter()
            try:
                answer = await client.post("/v1/classify", params={"crops": mode.crops, "models": mode.models},
                                           content=images[i % len(images)], headers={"content-type": "image/jpeg"})
            except httpx.HTTPError:
                return 0, time.perf_counter() - started, None
            body = answer.json() if answer.status_code == 200 else None
            return answer.status_code, time.perf_counter() - started, body

        tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
        await asyncio.sleep(0)  # every request is waiting at the gate: they leave together
        gate.set()
        results = await asyncio.gather(*tasks)
    statuses = Counter(status for status, _, _ in results)
    ms = np.array([seconds * 1000 for _, seconds, _ in results])
    totals = [body["timings_ms"]["total"] for _, _, body in results if body]
    return {
        "count": count, "modes": modes, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "ok": statuses.get(200, 0), "shed": statuses.get(503, 0),
        "server_errors": sum(v for k, v in statuses.items() if (k >= 500 and k != 503) or k == 0),
        "client_ms": {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())},
        "server_total_ms_p50": float(np.percentile(totals, 50)) if totals else None,
    }


def burst(url: str, images: list[bytes], modes: list[str], count: int, *, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send the burst and wait for every answer (bounded by `timeout_s` per request)."""
    return asyncio.run(_burst(url, images, modes, count, timeout_s))
