"""Anytime answers under overload: the same open-loop load, past capacity, with and without
partial=true, against `python -m service` (docs/benchmarks.md, "Anytime answers under overload").

    python -m loadtest anytime --repository runs/t3/repository --images runs/t3/textures/val

Capacity is the best closed loop (1, 2 or 4 outstanding) in the mode, without partial or deadline.
Then phases alternate, `--rounds` times each: `--overload` x capacity offered open-loop (a fixed
send schedule, whatever the answers) for `--seconds`, the same requests once without partial=true
and once with it. Per request the status, machine code, latency seen by the client, `partial`
and evaluations are kept. A request is admitted unless refused up front (503, 422); it is in
time when it got 200 within its deadline_ms. Not part of CI. Needs the loadtest extra (httpx, psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from loadtest.soak import capacity, images, service

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Answer:
    status: int
    code: str | None
    ms: float
    partial: bool
    evaluations: int | None
    correct: bool | None = None  # top-1 against the image's class folder, when the images have them


async def _classify(client: httpx.AsyncClient, data: bytes, params: dict, target: int | None = None) -> Answer:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/classify", params=params, content=data,
                                     headers={"content-type": "image/jpeg"})
    except httpx.HTTPError as exc:
        return Answer(0, type(exc).__name__, (time.perf_counter() - started) * 1000, False, None)
    ms = (time.perf_counter() - started) * 1000
    body = response.json()
    if response.status_code != 200:
        return Answer(response.status_code, body.get("code"), ms, False, None)
    correct = None if target is None else body["predictions"][0]["index"] == target
    return Answer(200, None, ms, bool(body.get("partial")), body["evaluations"], correct)


async def open_loop(
    url: str, data: list[bytes], targets: list[int | None], params: dict, rate: float, seconds: float
) -> list[Answer]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks, start = [], time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            j = i % len(data)
            tasks.append(asyncio.create_task(_classify(client, data[j], params, targets[j])))
        return list(await asyncio.gather(*tasks))


def summarise(answers: list[Answer], deadline_ms: float) -> dict:
    statuses: dict[str, int] = {}
    for a in answers:
        key = str(a.status) + (f" {a.code}" if a.code else "")
        statuses[key] = statuses.get(key, 0) + 1
    admitted = [a for a in answers if a.status not in (503, 422)]
    ok = [a for a in admitted if a.status == 200]
    in_time = [a for a in ok if a.ms <= deadline_ms]
    latencies = sorted(a.ms for a in ok)
    judged = [a.correct for a in ok if a.correct is not None]
    return {
        "sent": len(answers), "statuses": statuses, "admitted": len(admitted), "answered_200": len(ok),
        "in_time_200": len(in_time),
        "in_time_share_of_admitted": round(len(in_time) / len(admitted), 4) if admitted else None,
        "partial_share_of_200": round(sum(a.partial for a in ok) / len(ok), 4) if ok else None,
        "mean_evaluations_of_200": round(statistics.fmean(a.evaluations for a in ok), 1) if ok else None,
        "top1_error_of_200": round(1 - statistics.fmean(judged), 4) if judged else None,
        "latency_ms_200": {"p50": round(latencies[len(latencies) // 2], 1),
                           "p99": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
                           "max": round(latencies[-1], 1)} if latencies else None,
    }


def render(result: dict) -> str:
    lines = [
        f"{result['mode']}, deadline_ms={result['deadline_ms']:g}: capacity {result['capacity_rps']:.2f}/s "
        f"closed-loop, offered {result['offered_rps']:.2f}/s ({result['overload']:g}x) for {result['seconds']:g} s "
        f"x {result['rounds']} rounds per phase, interleaved",
        "",
        "| partial | sent | statuses | admitted | 200 by the deadline / admitted | partial / 200 | "
        "mean evaluations (200) | top-1 error (200) | p50 / p99 latency (200) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in result["phases"].items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
        share = 100 * (s["in_time_share_of_admitted"] or 0)
        lat = s["latency_ms_200"] or {"p50": float("nan"), "p99": float("nan")}
        error = "" if s.get("top1_error_of_200") is None else f"{100 * s['top1_error_of_200']:.2f}%"
        lines.append(
            f"| {name} | {s['sent']} | {statuses} | {s['admitted']} | {s['in_time_200']} / {s['admitted']} = "
            f"{share:.2f}% | {100 * (s['partial_share_of_200'] or 0):.1f}% | {s['mean_evaluations_of_200']} | "
            f"{error} | {lat['p50']:.0f} / {lat['p99']:.0f} ms |"
        )
    return "\n".join(lines)


def _images(args: argparse.Namespace) -> tuple[list[bytes], list[int | None]]:
    """The images to send, spread over the classes, and each one's class index when --images is an
    ImageFolder split (class folders in sorted order, as training numbered them)."""
    if args.images is None:
        found = images(args.image_count)
        return found, [None] * len(found)
    root = Path(args.images)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = sorted(root.rglob("*.jpg"))
    files = [files[round(i * len(files) / args.image_count)] for i in range(min(args.image_count, len(files)))]
    targets = [classes.index(f.parent.name) if f.parent.name in classes else None for f in files]
    return [f.read_bytes() for f in files], targets


async def run(args: argparse.Namespace, url: str, pid: int) -> dict:
    data, targets = _images(args)
    base = {"crops": args.crops, "ensemble": args.ensemble, "deadline_ms": args.deadline_ms}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for i in range(min(4, len(data))):  # warm the path (first batches, thread pools) before measuring
            await _classify(client, data[i], base)
    # Capacity without a deadline: admission by deadline would refuse some of the closed loop's requests.
    # The best of 1, 2 and 4 outstanding: on a shared CPU more requests at once can answer fewer per second.
    free = {k: v for k, v in base.items() if k != "deadline_ms"}
    cap = max([await capacity(url, data, free, args.capacity_s, n) for n in (1, 2, 4)])
    rate = args.overload * cap
    proc = psutil.Process(pid)
    phases: dict[str, list[Answer]] = {"without": [], "with": []}
    cpu_before, load_before = proc.cpu_times(), os.getloadavg()
    for _ in range(args.rounds):  # interleaved, so that the machine's other load falls on both alike
        for name, partial in (("without", False), ("with", True)):
            params = {**base, **({"partial": "true"} if partial else {})}
            phases[name] += await open_loop(url, data, targets, params, rate, args.seconds)
            await asyncio.sleep(args.pause_s)  # let the queue empty between phases
    cpu_after = proc.cpu_times()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"), "mode": f"crops={args.crops}&ensemble={args.ensemble}",
        "deadline_ms": args.deadline_ms, "capacity_rps": round(cap, 2), "offered_rps": round(rate, 2),
        "overload": args.overload, "seconds": args.seconds, "rounds": args.rounds,
        "service_cpu_s": round(cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system, 1),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cores": os.cpu_count(),
        "phases": {("partial=true" if k == "with" else "partial=false"): summarise(v, args.deadline_ms)
                   for k, v in phases.items()},
        "answers": {k: [asdict(a) for a in v] for k, v in phases.items()} if args.keep_answers else None,
    }


def add_anytime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, required=True, help="model repository to serve")
    parser.add_argument("--service-args", default="--providers cpu", help="extra flags for python -m service")
    parser.add_argument("--images", help="a folder of .jpg files to send, in class folders to judge the answers "
                        "(default: the shared samples)")
    parser.add_argument("--image-count", type=int, default=64)
    parser.add_argument("--crops", default="10")
    parser.add_argument("--ensemble", default="true")
    parser.add_argument("--deadline-ms", type=float, default=1000)
    parser.add_argument("--overload", type=float, default=2.0, help="offered rate over measured capacity")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause-s", type=float, default=3)
    parser.add_argument("--capacity-s", type=float, default=10, help="each closed loop (1, 2, 4 outstanding)")
    parser.add_argument("--keep-answers", action="store_true", help="every answer in the JSON too")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "anytime.json")


def run_anytime(args: argparse.Namespace) -> int:
    with service(args.repository, args.service_args.split()) as (url, pid):
        result = asyncio.run(run(args, url, pid))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0

