"""`python -m loadtest gpu-check`: the GPU host's one-command check (docs/loadtest.md, "GPU host").

1. The model ceiling by batch size with the service's own runtime (service/runtime.py, cuda.py),
   for each runtime variant (CUDA graphs on/off, cuDNN's algorithm search), with its warm-up time.
2. The decode budget of the host's cores.
3. The service: time to ready, device memory at ready and the peak of every phase, a burst of
   light requests on the idle device, each mode alone (server-side `timings_ms`), its answers
   against the CPU provider in fp32 (whole distributions), each mode under load as a fraction of
   its limit, and what admission estimated against what happened.
4. The naive baseline at the same concurrency.

Runs on CPU too, small (`--providers cpu --quick`), which is how the test suite keeps it working.

    python -m loadtest gpu-check --model-repository model_repository --output $OUT/gpu-check
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort

from loadtest import machine
from loadtest.burst import burst
from loadtest.ceiling import measure_streams, preprocess_cost
from loadtest.device_memory import MemoryWatch
from loadtest.gpu_report import render
from loadtest.images import load_corpus
from loadtest.mix import Mode
from loadtest.phases import Phases
from loadtest.recording import write_json
from loadtest.reference import Reference, compare
from loadtest.scrape import Snapshot, quantile
from loadtest.servers import ServerProcess
from service import gpu
from service.cuda import CudaConfig, CudaDevice
from service.repository import load_repository
from service.runtime import OnnxModel, choose_provider

MODES = ("1x1", "10x1", "144x1", "1x7", "10x7", "144x7")
LIGHT = ("1x1", "10x1", "1x7")  # the burst's modes
TOLERANCE = {"fp16": 2e-3, "fp32": 1e-5}  # largest allowed |p - p_cpu| of any class


def add_gpu_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--providers", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--precision", choices=("fp16", "fp32"), help="default fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--batches", type=int, nargs="+", help="ceiling batch sizes (default 1 8 32 128 256 "
                                                               "on CUDA, 1 2 4 8 on CPU)")
    parser.add_argument("--point-s", type=float, default=2.0, help="seconds per ceiling point (default 2)")
    parser.add_argument("--mode-s", type=float, default=10.0, help="seconds measured per mode (default 10)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients for 1 and 10 crops (default 64)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), type=lambda m: Mode.parse(m).name)
    parser.add_argument("--burst", type=int, default=256, help="light requests sent at once (default 256)")
    parser.add_argument("--alone", type=int, default=10, help="requests per mode sent one at a time (default 10)")
    parser.add_argument("--check-images", type=int, default=3, help="images compared with the CPU (default 3)")
    parser.add_argument("--no-variants", action="store_true", help="ceiling with the service's settings only")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--service-args", default="", help="extra flags for python -m service, quoted")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--output", type=Path, default=Path("runs") / "gpu-check", help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="second-long phases: checks the script, not speed")


def _variants(cuda: bool, service_args: list[str], everything: bool) -> list[dict[str, Any]]:
    """Runtime variants for the ceiling: the service's default first."""
    if not cuda:
        return [{"graphs": False, "search": "-"}]
    default = {"graphs": "--no-cuda-graphs" not in service_args, "search": "HEURISTIC"}
    if not everything:
        return [default]
    # What each choice buys: graphs against none, cuDNN's timed search against its heuristic.
    return [default, {**default, "graphs": not default["graphs"]}, {**default, "search": "EXHAUSTIVE"}]


def _ceiling(path: Path, provider: str, batches: list[int], variant: dict[str, Any], *, lanes: int,
             point_s: float) -> dict[str, Any]:
    """The service's runtime alone: its session options, lanes, buffers and graphs, host arrays in
    and out, `lanes` threads at a time."""
    started = time.perf_counter()
    device = None
    if provider == "cuda":
        config = CudaConfig(lanes=lanes, graphs=variant["graphs"], conv_algo_search=variant["search"])
        device = CudaDevice(config, max_batch_size=max(batches))
    model = OnnxModel(path, provider=provider, max_batch_size=max(batches), device=device)
    model.warm_up()
    out: dict[str, Any] = {**variant, "warm_s": time.perf_counter() - started, "points": []}
    for batch in batches:
        ips, cores, ms = measure_streams(model.run, batch, lanes, point_s)
        out["points"].append({"batch": batch, "images_per_s": ips, "ms_per_batch": ms, "cpu_cores": cores})
        print(f"  ceiling graphs={variant['graphs']} search={variant['search']} batch {batch:4d}: {ips:10.1f} img/s"
              f"  {ms:8.2f} ms per batch", file=sys.stderr, flush=True)
    if device is not None:
        device.close()
    return out


def _mode_load(mode: Mode, concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load for a mode. 144 crops x 64 clients would overflow a model's queue
    (max_queue_rows 4096), so 16 clients there, and a request count rather than a time window:
    a window a few requests long would cut them in half (the same reason as bench's heavy modes)."""
    if mode.crops < 144:
        return {"concurrency": concurrency, "duration_s": seconds, "warmup_s": min(2.0, seconds / 3)}
    clients = max(1, min(concurrency, 16))
    return {"concurrency": clients, "requests": 4 * clients, "duration_s": None, "warmup_s": 0.0}


def _alone(url: str, images: list[bytes], mode: Mode, count: int) -> dict[str, Any]:
    """`count` requests one after another on the otherwise idle service: p50 of each `timings_ms` stage."""
    timings: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(count):
            answer = client.post("/v1/classify", params={"crops": mode.crops, "models": mode.models},
                                 content=images[i % len(images)], headers={"content-type": "image/jpeg"})
            if answer.status_code == 200:
                timings.append(answer.json()["timings_ms"])
    stages = [k for k, v in (timings[0] if timings else {}).items() if isinstance(v, int | float)]
    return {"n": len(timings), "p50_ms": {k: statistics.median(t[k] for t in timings) for k in stages},
            "runs": timings[len(timings) // 2]["runs"] if timings else []}


def _estimates(before: Snapshot, after: Snapshot) -> dict[str, float | None]:
    """Actual over estimated completion of the requests admitted between two scrapes."""
    buckets = (after - before).buckets("googlenet_completion_estimate_ratio")
    return {f"p{q}": quantile(buckets, q / 100) for q in (10, 50, 90)}


def _scrape(url: str) -> Snapshot:
    return Snapshot.parse(httpx.get(url + "/metrics", timeout=30).text)


def run_gpu_check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    provider = choose_provider(args.providers)
    cuda = provider == "cuda"
    precision = args.precision or ("fp16" if cuda else "fp32")
    repo = load_repository(args.model_repository, precision=precision)
    cores = machine.cores()
    lanes = 2 if cuda else cores  # the service's defaults (service/serving.py)
    batches = args.batches or ([1, 8, 32, 128, 256] if cuda else [1, 2, 4, 8])
    point_s, mode_s = (0.5, 1.5) if args.quick else (args.point_s, args.mode_s)
    extra = shlex.split(args.service_args)
    result: dict[str, Any] = {"machine": machine.describe(), "provider": provider, "precision": precision,
                              "members": len(repo.members), "service_args": extra, "gpu": gpu.device_info(),
                              "onnxruntime": ort.__version__}
    print(f"gpu-check on {provider.upper()} ({precision}), {cores} cores", file=sys.stderr, flush=True)
    result["ceiling"] = []
    for variant in _variants(cuda, extra, everything=not (args.no_variants or args.quick)):
        try:
            result["ceiling"].append(_ceiling(repo.members[0].path, provider, batches, variant, lanes=lanes,
                                              point_s=point_s))
        except Exception as exc:  # one variant that cannot run must not cost the rest of the check
            print(f"  ceiling {variant}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            result["ceiling"].append({**variant, "error": f"{type(exc).__name__}: {exc}", "warm_s": 0.0,
                                      "points": [{"batch": b, "images_per_s": 0.0, "ms_per_batch": 0.0,
                                                  "cpu_cores": 0.0} for b in batches]})
    args.output.mkdir(parents=True, exist_ok=True)
    write_json(args.output / "result.json", result)  # after each step: a run cut short keeps what it measured
    measured = [v for v in result["ceiling"] if "error" not in v] or result["ceiling"]
    best = max(measured[0]["points"], key=lambda p: p["images_per_s"])  # the service's variant, if it ran
    corpus = load_corpus(args.images)
    decode_s = preprocess_cost(corpus.images, 1, max_images=50)
    result.update(best=best, decode_ms=decode_s * 1000, decode_budget_ips=cores / decode_s)

    modes = [Mode.parse(m) for m in args.modes if Mode.parse(m).models <= len(repo.members)]
    service_cmd = ["--model-repository", str(args.model_repository), "--providers", provider, "--precision",
                   precision, "--log-level", "info", "--max-queue-rows", "4096", *extra]
    log = args.output / "server.log"
    images = corpus.images[: max(1, args.check_images)]
    launched = time.perf_counter()
    with ServerProcess("service", service_cmd, log=log) as server, MemoryWatch(server.pid) as memory:
        result["ready_s"] = time.perf_counter() - launched
        memory.phase("ready")

        def save() -> None:
            result["memory"] = memory.summary()
            write_json(args.output / "result.json", result)

        before = _scrape(server.url)
        light = [m for m in LIGHT if Mode.parse(m).models <= len(repo.members)]
        result["burst"] = burst(server.url, corpus.images, light, 16 if args.quick else args.burst)
        result["burst"]["estimates"] = _estimates(before, _scrape(server.url))
        print(f"  burst of {result['burst']['count']}: {result['burst']['statuses']}", file=sys.stderr, flush=True)
        save()
        result["alone"] = {m.name: _alone(server.url, corpus.images, m, 3 if args.quick else args.alone)
                           for m in modes}
        save()
        result["service"] = {}
        phases = Phases(server, corpus, phase_s=mode_s, warmup_s=min(2.0, mode_s / 3))
        before = _scrape(server.url)
        for mode in modes:
            memory.phase(f"mode {mode.name}")
            load = _mode_load(mode, args.concurrency, mode_s)
            r = phases.run(f"{mode.name} c{load['concurrency']}", mode.name, timeout_s=300.0, **load)
            result["service"][mode.name] = _row(r, mode, best["images_per_s"], result["decode_budget_ips"])
            save()
        after = _scrape(server.url)
        result["estimates_under_load"] = _estimates(before, after)
        result["graph_fallbacks"] = after.total("googlenet_cuda_graph_fallbacks_total")
        save()
        # Last: the reference runs on this host's CPU (1,008 float32 runs per image at 144x7).
        result["correctness"] = compare(server.url, Reference(args.model_repository), images,
                                        [m.name for m in modes], tolerance=TOLERANCE[precision])
        save()
    if not args.no_baseline:
        with ServerProcess("loadtest.baseline", ["--model-repository", str(args.model_repository),
                                                 "--providers", provider], log=log) as server:
            r = Phases(server, corpus, phase_s=mode_s, warmup_s=min(2.0, mode_s / 3), label="baseline").run(
                f"1x1 c{args.concurrency}", "1x1", concurrency=args.concurrency, timeout_s=300.0)
            result["baseline_1x1"] = _row(r, Mode(1, 1), best["images_per_s"], result["decode_budget_ips"])
    result["duration_s"] = time.monotonic() - started
    write_json(args.output / "result.json", result)
    table = render(result)
    (args.output / "gpu-check.md").write_text(table)
    print(table)
    return 0


def _row(r: dict[str, Any], mode: Mode, ceiling_ips: float, decode_ips: float) -> dict[str, Any]:
    evals = r["evaluations_per_s"]
    # A mode's own limit: the model's ceiling in evaluations/s, or the decode budget in images/s.
    limit = min(ceiling_ips / mode.evaluations, decode_ips)
    bound = "decode + crop" if decode_ips < ceiling_ips / mode.evaluations else "model"
    return {"images_per_s": r["throughput_rps"], "evaluations_per_s": evals, "of_ceiling": evals / ceiling_ips,
            "limit_ips": limit, "of_limit": r["throughput_rps"] / limit, "bound": bound,
            "p50_ms": r["latency_ms"].get("p50"), "p99_ms": r["latency_ms"].get("p99"),
            "errors": r["requests"] - r["ok"], "mean_batch_rows": (r.get("server") or {}).get("mean_batch_rows"),
            "cpu": r["cpu"], "concurrency": r["spec"]["concurrency"]}

