"""`python -m loadtest gpu-check`: the GPU host's one-command check (docs/loadtest.md, "GPU host"):
the model ceiling by batch size with the service's own runtime and ONNX Runtime options, the decode
budget of the host's cores, then the service end to end in every mode as fractions of the ceiling,
and the naive baseline at the same concurrency. Runs on CPU too (small), which is how it is tested.

    python -m loadtest gpu-check --model-repository model_repository --output $OUT/gpu-check
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from loadtest import machine
from loadtest.ceiling import measure_streams, preprocess_cost
from loadtest.images import load_corpus
from loadtest.mix import Mode
from loadtest.phases import Phases
from loadtest.recording import write_json
from loadtest.servers import ServerProcess
from service.repository import load_repository
from service.runtime import OnnxModel, choose_provider

MODES = ("1x1", "10x1", "144x1", "1x7", "10x7", "144x7")


def add_gpu_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--providers", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batches", type=int, nargs="+", help="ceiling batch sizes (default 1 8 32 64 128 256 "
                                                               "on CUDA, 1 2 4 8 on CPU)")
    parser.add_argument("--point-s", type=float, default=3.0, help="seconds per ceiling point (default 3)")
    parser.add_argument("--mode-s", type=float, default=12.0, help="seconds measured per mode (default 12)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients for 1 and 10 crops (default 64)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), type=lambda m: Mode.parse(m).name)
    parser.add_argument("--no-cuda-graphs", action="store_true", help="ceiling and service without CUDA graphs")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--service-args", default="", help="extra flags for python -m service, quoted")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--output", type=Path, default=Path("runs") / "gpu-check", help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="second-long phases: checks the script, not speed")


def _ceiling(path: Path, provider: str, batches: list[int], *, instances: int, cuda_graphs: bool,
             point_s: float) -> list[dict[str, float]]:
    """The service's runtime (service/runtime.py) alone: the same session options, IO binding and
    CUDA graphs the service uses, host arrays in and out, `instances` threads at a time."""
    model = OnnxModel(path, provider=provider, instances=instances, max_batch_size=max(batches),
                      cuda_graphs=cuda_graphs)
    model.warm_up()
    points = []
    for batch in batches:
        ips, cores, ms = measure_streams(model.run, batch, instances, point_s)
        points.append({"batch": batch, "images_per_s": ips, "ms_per_batch": ms, "cpu_cores": cores})
        print(f"  ceiling batch {batch:4d}: {ips:10.1f} img/s  {ms:8.2f} ms per batch", file=sys.stderr, flush=True)
    return points


def _mode_load(mode: Mode, concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load for a mode. 144 crops x 64 clients would overflow a model's queue
    (max_queue_rows 4096), so 16 clients there, and a request count rather than a time window:
    a window a few requests long would cut them in half (the same reason as bench's heavy modes)."""
    if mode.crops < 144:
        return {"concurrency": concurrency, "duration_s": seconds, "warmup_s": min(2.0, seconds / 3)}
    clients = max(1, min(concurrency, 16))
    return {"concurrency": clients, "requests": 4 * clients, "duration_s": None, "warmup_s": 0.0}


def run_gpu_check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    provider = choose_provider(args.providers)
    cuda = provider == "cuda"
    cuda_graphs = cuda and not args.no_cuda_graphs
    repo = load_repository(args.model_repository, precision="fp16" if cuda else "fp32")
    cores = machine.cores()
    instances = 2 if cuda else cores  # the service's defaults (service/app.py)
    batches = args.batches or ([1, 8, 32, 64, 128, 256] if cuda else [1, 2, 4, 8])
    point_s, mode_s = (0.5, 1.5) if args.quick else (args.point_s, args.mode_s)
    result: dict[str, Any] = {"machine": machine.describe(), "provider": provider, "cuda_graphs": cuda_graphs,
                              "precision": repo.members[0].precision, "members": len(repo.members)}
    print(f"gpu-check on {provider.upper()} ({result['precision']}), {cores} cores", file=sys.stderr, flush=True)
    points = _ceiling(repo.members[0].path, provider, batches, instances=instances, cuda_graphs=cuda_graphs,
                      point_s=point_s)
    best = max(points, key=lambda p: p["images_per_s"])
    corpus = load_corpus(args.images)
    decode_s = preprocess_cost(corpus.images, 1, max_images=50)
    result.update(ceiling=points, best=best, decode_ms=decode_s * 1000, decode_budget_ips=cores / decode_s)

    modes = [Mode.parse(m) for m in args.modes if Mode.parse(m).models <= len(repo.members)]
    service_cmd = ["--model-repository", str(args.model_repository), "--providers", provider,
                   "--log-level", "warning", "--max-queue-rows", "4096",  # the CUDA default, on CPU runs too
                   *(["--cuda-graphs"] if cuda_graphs else []), *shlex.split(args.service_args)]
    args.output.mkdir(parents=True, exist_ok=True)
    log = args.output / "server.log"
    result["service"] = {}
    with ServerProcess("service", service_cmd, log=log) as server:
        phases = Phases(server, corpus, phase_s=mode_s, warmup_s=min(2.0, mode_s / 3))
        for mode in modes:
            load = _mode_load(mode, args.concurrency, mode_s)
            r = phases.run(f"{mode.name} c{load['concurrency']}", mode.name, timeout_s=300.0, **load)
            result["service"][mode.name] = _row(r, mode, best["images_per_s"], result["decode_budget_ips"])
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


def render(result: dict[str, Any]) -> str:
    m, best = result["machine"], result["best"]
    lines = [
        (f"## GPU check: {m['date']}, {result['provider'].upper()} {result['precision']}, "
        f"CUDA graphs {'on' if result['cuda_graphs'] else 'off'}, {m['cores']} cores, commit {m['commit']}"),
        "",
        "| batch | model img/s | ms per batch |", "|---:|---:|---:|",
        *[f"| {p['batch']} | {p['images_per_s']:,.0f} | {p['ms_per_batch']:.2f} |" for p in result["ceiling"]],
        "",
        (f"Ceiling: {best['images_per_s']:,.0f} img/s at batch {best['batch']}. Decode + crop, 1 crop: "
        f"{result['decode_ms']:.2f} ms per image per core = {result['decode_budget_ips']:,.0f} img/s on all cores."),
        "",
        ("| mode | clients | img/s | evaluations/s | of ceiling | of own limit | bound by | p50 ms | p99 ms "
        "| mean batch | errors | cores: server / generator / other |"),
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    rows = list(result["service"].items())
    if "baseline_1x1" in result:
        rows.append(("1x1 naive baseline", result["baseline_1x1"]))
    for name, r in rows:
        c = r["cpu"]
        batch = "-" if r["mean_batch_rows"] is None else f"{r['mean_batch_rows']:.1f}"
        lines.append(
            f"| {name} | {r['concurrency']} | {r['images_per_s']:,.1f} | {r['evaluations_per_s']:,.0f} "
            f"| {r['of_ceiling']:.0%} | {r['of_limit']:.0%} | {r['bound']} | {r['p50_ms'] or 0:.1f} "
            f"| {r['p99_ms'] or 0:.1f} | {batch} | {r['errors']} "
            f"| {c['server_cores']:.2f} / {c['generator_cores']:.2f} / {c['other_cores']:.2f} |")
    if "baseline_1x1" in result and "1x1" in result["service"]:
        ratio = result["service"]["1x1"]["images_per_s"] / max(result["baseline_1x1"]["images_per_s"], 1e-9)
        clients = result["baseline_1x1"]["concurrency"]
        lines += ["", f"Service / naive baseline, 1 crop, {clients} clients: {ratio:.2f}x"]
    return "\n".join(lines) + "\n"
