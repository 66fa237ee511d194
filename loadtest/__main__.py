"""`python -m loadtest run|sweep|bench|versus|protocols|gpu-check|soak|anytime`: load tests, sweeps and benchmarks.

    python -m loadtest run --url http://127.0.0.1:8000 --concurrency 8 --duration 30
    python -m loadtest run --url http://127.0.0.1:8000 --rate 20 --mix 1x1:0.9,10x1:0.09,144x7:0.01
    python -m loadtest sweep --url http://127.0.0.1:8000 --start 10 --step 5 --objective-p99-ms 500
    python -m loadtest bench --model-repository model_repository      # writes docs/benchmarks.md
    python -m loadtest versus --model-repository model_repository --concurrency 1 4 16 64  # vs a naive server
    python -m loadtest protocols --model-repository model_repository --concurrency 1 8  # gRPC vs v2 vs v1
    python -m loadtest gpu-check --model-repository model_repository  # on the GPU host

See docs/loadtest.md for every option and how to read the results.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import DEFAULT_FOLDER, load_corpus
from loadtest.mix import Mix
from loadtest.protocol import PROTOCOLS
from loadtest.recording import write_json


def _load_args(parser: argparse.ArgumentParser, *, sweep: bool) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default %(default)s)")
    if not sweep:
        load = parser.add_mutually_exclusive_group(required=True)
        load.add_argument("--rate", type=float, help="open loop: Poisson arrivals at this many requests/s")
        load.add_argument("--concurrency", type=int, help="closed loop: this many clients, one request each")
    parser.add_argument("--duration", type=float, default=None if not sweep else 20.0,
                        help="seconds measured (after the warm-up); run default 30 unless --requests")
    parser.add_argument("--requests", type=int, help="stop after this many measured requests")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not measured (default 2)")
    parser.add_argument("--mix", default="1x1", help="CROPSxMODELS[:share],... (default 1x1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="v1",
                        help="/v1/classify, /v2 infer over HTTP, or v2 ModelInfer over gRPC (default v1)")
    parser.add_argument("--grpc-target",
                        help="host:port of the gRPC API (--protocol grpc; default: --url's host, 8001)")
    parser.add_argument("--v2-model", default="googlenet", help="v2 model name (the ensemble's name by default)")
    parser.add_argument("--images", type=Path, help=f"image folder (default {DEFAULT_FOLDER.name} beside the repo, "
                                                    "else generated JPEGs)")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="folder for result.json and the PNG report "
                                                    "(default runs/<command>-<time>)")
    parser.add_argument("--quiet", action="store_true", help="no live progress lines")


def _spec(args: argparse.Namespace, **load: object) -> LoadSpec:
    duration = args.duration if args.duration is not None or args.requests else 30.0
    return LoadSpec(
        url=args.url.rstrip("/"), mix=Mix.parse(args.mix), duration_s=duration, requests=args.requests,
        warmup_s=args.warmup, protocol=args.protocol, v2_model=args.v2_model, timeout_s=args.timeout,
        grpc_target=args.grpc_target or (f"{urlsplit(args.url).hostname}:8001" if args.protocol == "grpc" else None),
        seed=args.seed, progress=not args.quiet, **load,
    )


def _output(args: argparse.Namespace, command: str) -> Path:
    return args.output or Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_run(args: argparse.Namespace) -> int:
    from loadtest.plots import plot_run

    spec = _spec(args, rate=args.rate, concurrency=args.concurrency)
    corpus = load_corpus(args.images)
    result = run_load_sync(spec, corpus)
    out = _output(args, "run")
    write_json(out / "result.json", result)
    plot_run(result, out / "report.png")
    lat = result["latency_ms"]
    print(json.dumps({
        "ok_per_s": round(result["throughput_rps"], 2), "requests": result["requests"], "outcomes": result["outcomes"],
        "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
        "mean_batch_rows": (result["server"] or {}).get("mean_batch_rows"),
        "generator_cores": round(result["generator"]["cores"], 3), "report": str(out),
    }))
    return 0 if result["ok"] else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from loadtest.plots import plot_sweep
    from loadtest.sweep import rates, run_sweep

    corpus = load_corpus(args.images)
    step_rates = rates(args.start, step=args.step, factor=args.factor, steps=args.steps)
    base = _spec(args, rate=step_rates[0])
    result = run_sweep(base, step_rates, lambda spec: run_load_sync(spec, corpus),
                       objective_p99_ms=args.objective_p99_ms, max_error_ratio=args.max_error_ratio)
    out = _output(args, "sweep")
    write_json(out / "sweep.json", result)
    plot_sweep(result["steps"], out / "sweep.png", knee=result["capacity_rps"], objective_ms=args.objective_p99_ms)
    print(json.dumps({"capacity_rps": result["capacity_rps"], "broke_at": result["broke_at"], "report": str(out)}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from loadtest.bench import BenchConfig, run_bench

    return run_bench(BenchConfig.from_args(args))


def cmd_versus(args: argparse.Namespace) -> int:
    from loadtest.versus import run_versus

    return run_versus(args)


def cmd_protocols(args: argparse.Namespace) -> int:
    from loadtest.protocols import run_protocols

    return run_protocols(args)


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from loadtest.gpu_check import run_gpu_check

    return run_gpu_check(args)


def cmd_soak(args: argparse.Namespace) -> int:
    from loadtest.soak import run_soak

    return run_soak(args)


def cmd_anytime(args: argparse.Namespace) -> int:
    from loadtest.anytime import run_anytime

    return run_anytime(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="one load test: open or closed loop, JSON + PNG report")
    _load_args(run, sweep=False)
    run.set_defaults(func=cmd_run)

    sweep = commands.add_parser("sweep", help="raise the open-loop rate until the latency objective breaks")
    _load_args(sweep, sweep=True)
    sweep.add_argument("--start", type=float, default=5.0, help="first offered rate, requests/s (default 5)")
    steps = sweep.add_mutually_exclusive_group()
    steps.add_argument("--step", type=float, help="add this many requests/s per step")
    steps.add_argument("--factor", type=float, help="multiply the rate by this per step (default 1.25)")
    sweep.add_argument("--steps", type=int, default=12, help="at most this many steps (default 12)")
    sweep.add_argument("--objective-p99-ms", type=float, default=500.0, help="latency objective (default 500)")
    sweep.add_argument("--max-error-ratio", type=float, default=0.01, help="errors allowed (default 0.01)")
    sweep.set_defaults(func=cmd_sweep)

    from loadtest.bench import add_bench_args
    from loadtest.gpu_check import add_gpu_check_args

    bench = commands.add_parser("bench", help="the benchmark suite; writes docs/benchmarks.md")
    add_bench_args(bench)
    bench.set_defaults(func=cmd_bench)

    from loadtest.protocols import add_protocols_args
    from loadtest.versus import add_versus_args

    versus = commands.add_parser("versus", help="the service beside another server, 1 crop, rounds interleaved")
    add_versus_args(versus)
    versus.set_defaults(func=cmd_versus)

    protocols = commands.add_parser("protocols", help="gRPC vs HTTP v2 vs /v1 at the same concurrency, one run")
    add_protocols_args(protocols)
    protocols.set_defaults(func=cmd_protocols)

    gpu = commands.add_parser("gpu-check", help="model ceiling and the service in every mode on a GPU host")
    add_gpu_check_args(gpu)
    gpu.set_defaults(func=cmd_gpu_check)

    from loadtest.anytime import add_anytime_args
    from loadtest.soak import add_soak_args

    soak = commands.add_parser("soak", help="~70% of measured capacity, open loop, for minutes: no error, flat memory")
    add_soak_args(soak)
    soak.set_defaults(func=cmd_soak)
    anytime = commands.add_parser("anytime", help="overload with and without partial=true, interleaved")
    add_anytime_args(anytime)
    anytime.set_defaults(func=cmd_anytime)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the `with ServerProcess(...)` blocks: no server outlives the benchmark.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as typed, for the benchmark pages
    if getattr(args, "command", None) == "sweep" and args.step is None and args.factor is None:
        args.factor = 1.25
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
