"""`python -m loadtest protocols`: gRPC vs HTTP v2 vs /v1 against one service process, at the same
concurrency in one run: img/s, p50/p99 and the server's CPU seconds per request (from /proc, via
psutil), written as a section of docs/benchmarks.md that `bench` keeps (it sits in the notes).

    python -m loadtest protocols --model-repository model_repository --concurrency 1 8 --duration 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from loadtest import machine
from loadtest.benchdoc import write_section
from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import load_corpus
from loadtest.mix import Mix
from loadtest.recording import write_json
from loadtest.servers import ServerProcess
from service.repository import load_repository

ORDER = ("grpc", "v2", "v1")


def add_protocols_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--images", type=Path, help="JPEG folder (default ../shared/data/imagenet-samples)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="closed-loop client counts")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per protocol and level")
    parser.add_argument("--rounds", type=int, default=5, help="the duration split into this many interleaved runs")
    parser.add_argument("--label", default="images", help="names the section, so runs on two corpora both stay")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent before each, not measured")
    parser.add_argument("--mode", default="1x1", help="CROPSxMODELS of every request (default 1x1)")
    parser.add_argument("--service-args", default="", help="extra flags for python -m service, quoted")
    parser.add_argument("--output", type=Path, default=machine.REPO_ROOT / "docs" / "benchmarks.md")


def _run(server: ServerProcess, corpus: Any, protocol: str, args: argparse.Namespace, c: int, model: str,
         duration_s: float) -> tuple[dict[str, Any], float]:
    spec = LoadSpec(url=server.url, mix=Mix.parse(args.mode), concurrency=c, protocol=protocol, v2_model=model,
                    grpc_target=server.grpc_target, scrape_metrics=False, duration_s=duration_s)
    cpu0 = server.cpu_seconds()
    result = run_load_sync(spec, corpus)
    return result, server.cpu_seconds() - cpu0


def _level(server: ServerProcess, corpus: Any, args: argparse.Namespace, c: int, model: str) -> list[dict]:
    """One concurrency: every protocol warmed up, then `rounds` short runs of each, in rotating order,
    so drift in the machine's other load falls on all three alike."""
    for protocol in ORDER:
        _run(server, corpus, protocol, args, c, model, args.warmup)
    runs: dict[str, list[tuple[dict, float]]] = {p: [] for p in ORDER}
    for i in range(args.rounds):
        for protocol in ORDER[i % 3:] + ORDER[: i % 3]:
            runs[protocol].append(_run(server, corpus, protocol, args, c, model, args.duration / args.rounds))
    rows = []
    for protocol, done in runs.items():
        ok, requests = sum(r["ok"] for r, _ in done), sum(r["requests"] for r, _ in done)
        elapsed, cpu_s = sum(r["elapsed_s"] for r, _ in done), sum(cpu for _, cpu in done)
        rows.append({
            "protocol": protocol, "concurrency": c, "img_per_s": ok / elapsed, "requests": requests,
            "errors": requests - ok, "server_cpu_ms_per_request": 1000 * cpu_s / max(requests, 1),
            # percentiles do not add up: the median over the rounds of each round's percentile
            "p50_ms": statistics.median(r["latency_ms"].get("p50", 0) for r, _ in done),
            "p99_ms": statistics.median(r["latency_ms"].get("p99", 0) for r, _ in done),
        })
    return rows


def run_protocols(args: argparse.Namespace) -> int:
    import shlex

    repo = load_repository(args.model_repository)
    corpus = load_corpus(args.images)
    other = machine.busy_cores(2.0)
    rows = []
    cmd = ["--model-repository", str(args.model_repository), "--providers", "cpu", "--log-level", "warning",
           *shlex.split(args.service_args)]
    with ServerProcess("service", cmd) as server:
        for c in args.concurrency:
            for r in _level(server, corpus, args, c, repo.name):
                rows.append(r)
                print(f"c={c} {r['protocol']:4s} {r['img_per_s']:7.1f} img/s p50 {r['p50_ms']:7.1f} "
                      f"p99 {r['p99_ms']:7.1f} ms  server CPU {r['server_cpu_ms_per_request']:6.2f} ms/req "
                      f"errors {r['errors']}", file=sys.stderr, flush=True)
    report = {"machine": machine.describe(), "other_cores_at_start": other,
              "other_cores_at_end": machine.busy_cores(2.0),
              "mode": args.mode, "duration_s": args.duration, "rounds": args.rounds, "repository": repo.name,
              "images": f"{len(corpus.images)} images, mean {corpus.mean_bytes / 1000:.1f} kB",
              "trained": all(m.trained for m in repo.members), "rows": rows,
              "command": " ".join(["python -m loadtest", *args.argv])}
    write_section(args.output, "protocols", args.label, render(report))
    write_json(machine.REPO_ROOT / "runs" / f"protocols-{args.label}.json", report)
    return 0 if all(r["errors"] == 0 for r in rows) else 1


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"#### {report['images']}", "",
        f"{m['date']}: `{report['command']}` on {m['cpu']}, {m['cores']} cores, no GPU, commit {m['commit']}; "
        f"mode {report['mode']}, {report['duration_s']:g} s measured per row in {report['rounds']} interleaved "
        f"runs after a warm-up, against one service process ({report['repository']}, "
        f"{'trained' if report['trained'] else 'untrained'} weights). Other load: "
        f"{report['other_cores_at_start']:.2f} cores at the start, {report['other_cores_at_end']:.2f} at the end.", "",
        "| concurrency | protocol | img/s | p50 ms | p99 ms | server CPU ms/request | vs /v1 CPU | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        v1 = next(r for r in report["rows"] if r["concurrency"] == row["concurrency"] and r["protocol"] == "v1")
        name = {"grpc": "gRPC ModelInfer", "v2": "HTTP v2 infer", "v1": "/v1/classify"}[row["protocol"]]
        lines.append(
            f"| {row['concurrency']} | {name} | {row['img_per_s']:.1f} | {row['p50_ms'] or 0:.1f} | "
            f"{row['p99_ms'] or 0:.1f} | {row['server_cpu_ms_per_request']:.2f} | "
            f"{row['server_cpu_ms_per_request'] / v1['server_cpu_ms_per_request']:.2f}x | {row['errors']} |")
    return "\n".join(lines)

