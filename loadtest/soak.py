"""Soak: hours-style stability in minutes. Offer ~70% of measured capacity, open loop, for a fixed time;
pass when no request fails and the server's resident memory grows < 5% after warm-up.

    python -m loadtest soak --repository model_repository            # starts `python -m service` itself
    python -m loadtest soak --url http://127.0.0.1:8000 --pid 1234    # or soak a server already running

Not part of CI (10 minutes by default). Method and the last numbers: docs/reliability.md, "Soak";
results also go to docs/benchmarks.md ("Soak"). Needs the loadtest extra (httpx, psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from loadtest.images import load_corpus
from loadtest.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Window:
    """One reporting interval of the open-loop phase."""

    t_s: float
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    rss_mb: float = 0.0


def images(count: int = 32) -> list[bytes]:
    """The sample JPEGs beside the project, else generated ones (loadtest/images.py)."""
    return load_corpus(limit=count, generated=count).images


@contextmanager
def service(repository: Path, extra: list[str]) -> Iterator[tuple[str, int]]:
    """`python -m service` on `repository` until the block ends: (its URL, its pid)."""
    args = ["--model-repository", str(repository), "--log-level", "warning", *extra]
    with ServerProcess("service", args) as server:
        yield server.url, server.pid


async def _classify(client: httpx.AsyncClient, data: bytes, params: dict) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/classify", params=params, content=data,
                                     headers={"content-type": "image/jpeg"})
        outcome = "ok" if response.status_code == 200 else str(response.status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return outcome, (time.perf_counter() - started) * 1000


async def capacity(url: str, data: list[bytes], params: dict, seconds: float, concurrency: int) -> float:
    """Closed loop at `concurrency`: answered requests per second (the service's capacity here)."""
    done, stop = 0, time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < stop:
                outcome, _ = await _classify(client, data[(done + i) % len(data)], params)
                done += outcome == "ok"

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.monotonic() - started)


async def open_loop(url: str, pid: int, data: list[bytes], crops: int, rate: float, seconds: float,
                    window_s: float) -> list[Window]:
    """Send at `rate` per second on a fixed schedule, whatever the answers do (open loop)."""
    proc = psutil.Process(pid)
    windows = [Window(t_s=i * window_s) for i in range(int(np.ceil(seconds / window_s)))]
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    tasks: set[asyncio.Task[None]] = set()
    params = {"crops": crops}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = time.monotonic()

        async def one(i: int, w: Window) -> None:
            outcome, ms = await _classify(client, data[i % len(data)], params)
            if outcome == "ok":
                w.ok += 1
                w.latencies_ms.append(ms)
            else:
                w.errors[outcome] = w.errors.get(outcome, 0) + 1

        async def sample_memory() -> None:
            for w in windows:
                await asyncio.sleep(max(0.0, start + w.t_s + window_s - time.monotonic()))
                w.rss_mb = proc.memory_info().rss / 2**20

        sampler = asyncio.create_task(sample_memory())
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            w = windows[min(int((time.monotonic() - start) / window_s), len(windows) - 1)]
            w.sent += 1
            task = asyncio.create_task(one(i, w))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        await sampler
    return windows


def summarise(windows: list[Window], warmup_s: float, rate: float, cap: float) -> dict:
    steady = [w for w in windows if w.t_s >= warmup_s] or windows
    latencies = sorted(ms for w in steady for ms in w.latencies_ms)
    errors: dict[str, int] = {}
    for w in windows:
        for k, v in w.errors.items():
            errors[k] = errors.get(k, 0) + v
    base, end = steady[0].rss_mb, steady[-1].rss_mb
    window_s = windows[1].t_s - windows[0].t_s if len(windows) > 1 else 1

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "capacity_rps": round(cap, 2), "offered_rps": round(rate, 2),
        "sent": sum(w.sent for w in windows), "ok": sum(w.ok for w in windows), "errors": errors,
        "throughput_rps_after_warmup": round(sum(w.ok for w in steady) / (len(steady) * window_s), 2),
        "latency_ms_after_warmup": {"p50": round(pct(0.5), 1), "p90": round(pct(0.9), 1), "p99": round(pct(0.99), 1),
                                    "max": round(latencies[-1], 1) if latencies else None,
                                    "mean": round(statistics.fmean(latencies), 1) if latencies else None},
        "rss_mb": {"after_warmup": round(base, 1), "end": round(end, 1),
                   "max": round(max(w.rss_mb for w in windows), 1)},
        "rss_growth_pct_after_warmup": round(100 * (end - base) / base, 2) if base else None,
    }


def add_soak_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, help="model repository; the script starts the service on it")
    parser.add_argument("--url", help="soak a running service instead (give --pid for its memory)")
    parser.add_argument("--pid", type=int, help="process id of the running service (with --url)")
    parser.add_argument("--service-args", default="--providers cpu", help="extra flags for python -m service")
    parser.add_argument("--duration-s", type=float, default=600)
    parser.add_argument("--warmup-s", type=float, default=60, help="memory and latency are judged after this")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity to offer")
    parser.add_argument("--rate", type=float, help="requests per second (skips the capacity measurement)")
    parser.add_argument("--capacity-s", type=float, default=30)
    parser.add_argument("--crops", type=int, default=1)
    parser.add_argument("--window-s", type=float, default=10)
    parser.add_argument("--max-growth-pct", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "soak.json")


def run_soak(args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.repository) or (args.url and not args.pid):
        raise ValueError("give --repository, or --url with --pid")
    data = images()

    def run(url: str, pid: int) -> dict:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if args.rate:
            cap = args.rate / args.load
        else:
            cap = asyncio.run(capacity(url, data, {"crops": args.crops}, args.capacity_s, 2 * cores))
        rate = args.rate or args.load * cap
        print(f"capacity {cap:.1f} req/s; offering {rate:.1f} req/s for {args.duration_s:.0f} s", flush=True)
        windows = asyncio.run(open_loop(url, pid, data, args.crops, rate, args.duration_s, args.window_s))
        for w in windows:
            p50 = statistics.median(w.latencies_ms) if w.latencies_ms else float("nan")
            print(f"t={w.t_s:5.0f}s sent={w.sent} ok={w.ok} errors={w.errors} p50={p50:.0f}ms rss={w.rss_mb:.0f}MB")
        result = summarise(windows, args.warmup_s, rate, cap)
        result["windows"] = [asdict(w) | {"latencies_ms": None} for w in windows]
        return result

    if args.url:
        result = run(args.url, args.pid)
    else:
        with service(args.repository, args.service_args.split()) as (url, pid):
            result = run(url, pid)
    result |= {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "crops": args.crops,
               "cpu_count": os.cpu_count()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    passed = not result["errors"] and (result["rss_growth_pct_after_warmup"] or 0) < args.max_growth_pct
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1

