"""`python -m loadtest versus`: the service beside another server on the same model file, 1 crop,
closed loop, in one run: img/s, p50/p99 and CPU cores of each, rounds interleaved (the order flips
every round, so drift on a shared machine falls on both sides of a ratio), the spread of the
per-round ratios, and both against the in-process limit (decode + model on every core, no HTTP).

    python -m loadtest versus --model-repository model_repository            # vs loadtest/baseline.py
    python -m loadtest versus --against naive_server.py --against-args "--model {model}" --label naive
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from loadtest import machine
from loadtest.benchdoc import write_section
from loadtest.ceiling import limit_for, model_ceiling_cpu, preprocess_cost
from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import Corpus, load_corpus
from loadtest.mix import Mix
from loadtest.recording import write_json
from loadtest.servers import ServerProcess
from service.repository import load_repository

SIDES = ("service", "other")


def add_versus_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--against", default="loadtest.baseline",
                        help="the other server: a module, or a .py script taking --host and --port "
                             "(default %(default)s)")
    parser.add_argument("--against-args", default="--model-repository {repository}",
                        help="its flags; {repository} and {model} (the first member's fp32 ONNX file) are "
                             "filled in (default %(default)r)")
    parser.add_argument("--images", type=Path, help="JPEG folder (default ../shared/data/imagenet-samples)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64], help="closed-loop clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per server, level and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per level (default 2)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent to each before a level, not measured")
    parser.add_argument("--ceiling-s", type=float, default=4.0, help="seconds per batch size of the model ceiling")
    parser.add_argument("--service-args", default="", help="extra flags for python -m service, quoted")
    parser.add_argument("--label", default="baseline", help="names the section, so runs against two servers stay")
    parser.add_argument("--output", type=Path, default=machine.REPO_ROOT / "docs" / "benchmarks.md")


def _measure(server: ServerProcess, corpus: Corpus, c: int, duration_s: float) -> dict[str, Any]:
    spec = LoadSpec(url=server.url, mix=Mix.parse("1x1"), concurrency=c, duration_s=duration_s,
                    scrape_metrics=False)
    cpu0 = server.cpu_seconds()
    result = run_load_sync(spec, corpus)
    return {"img_per_s": result["ok"] / result["elapsed_s"], "errors": result["requests"] - result["ok"],
            "p50_ms": result["latency_ms"].get("p50", 0.0), "p99_ms": result["latency_ms"].get("p99", 0.0),
            "cores": (server.cpu_seconds() - cpu0) / result["elapsed_s"]}


def _level(servers: dict[str, ServerProcess], corpus: Corpus, c: int, args: argparse.Namespace) -> dict[str, Any]:
    for server in servers.values():
        _measure(server, corpus, c, args.warmup)
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i in range(args.rounds):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            rounds[side].append(_measure(servers[side], corpus, c, args.duration))
    # Throughput over all rounds; percentiles do not add up, so the median of each round's.
    row: dict[str, Any] = {"concurrency": c, "rounds": rounds}
    for side, done in rounds.items():
        row[side] = {key: statistics.median(r[key] for r in done) for key in ("p50_ms", "p99_ms", "cores")}
        row[side]["img_per_s"] = statistics.fmean(r["img_per_s"] for r in done)
        row[side]["errors"] = sum(r["errors"] for r in done)
    row["ratios"] = [s["img_per_s"] / o["img_per_s"] for s, o in zip(rounds["service"], rounds["other"], strict=True)]
    return row


def goals(report: dict[str, Any]) -> list[tuple[bool, str]]:
    """The service's promises against a naive server: never slower, never later at one client, a
    shorter tail under load, and near the machine's limit once there is anything to batch."""
    rows, limit = {r["concurrency"]: r for r in report["rows"]}, report["limit_img_per_s"]
    out = [(min(r["ratios"]) >= 1.0, f"{c} clients: throughput {_ratios(r)} the other's (>= 1.0x every round)")
           for c, r in rows.items()]
    if 1 in rows:
        s, o = rows[1]["service"]["p50_ms"], rows[1]["other"]["p50_ms"]
        out.append((s <= o, f"1 client: p50 {s:.1f} ms vs {o:.1f} ms (<=)"))
    for c in (c for c in rows if c >= 16):
        s, o = rows[c]["service"]["p99_ms"], rows[c]["other"]["p99_ms"]
        out.append((s < o, f"{c} clients: p99 {s:.1f} ms vs {o:.1f} ms (<)"))
    for c in (c for c in rows if c >= 4):
        share = rows[c]["service"]["img_per_s"] / limit
        out.append((share >= 0.9, f"{c} clients: {share:.0%} of the {limit:.1f} img/s in-process limit (>= 90%)"))
    return out


def _ratios(row: dict[str, Any]) -> str:
    ratios = row["ratios"]
    mean = row["service"]["img_per_s"] / row["other"]["img_per_s"]
    return f"{mean:.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)})"


def run_versus(args: argparse.Namespace) -> int:
    repo = load_repository(args.model_repository)
    corpus = load_corpus(args.images)
    model = repo.members[0].path
    other_load = machine.busy_cores(2.0)
    cores = machine.cores()
    best = max(model_ceiling_cpu(model, cores=cores, duration_s=args.ceiling_s), key=lambda p: p.images_per_s)
    pre_s = preprocess_cost(corpus.images, 1, max_images=100)
    limit = limit_for("1x1", 1, best_images_per_s=best.images_per_s, cores=cores, preprocess_s=pre_s)
    service_cmd = ["--model-repository", str(args.model_repository), "--providers", "cpu", "--log-level", "warning",
                   *shlex.split(args.service_args)]
    against_cmd = shlex.split(args.against_args.format(repository=args.model_repository, model=model))
    rows = []
    with ServerProcess("service", service_cmd) as service, ServerProcess(args.against, against_cmd) as other:
        for c in args.concurrency:
            row = _level({"service": service, "other": other}, corpus, c, args)
            rows.append(row)
            s, o = row["service"], row["other"]
            print(f"c={c:3d} service {s['img_per_s']:6.1f} img/s p50 {s['p50_ms']:6.1f} p99 {s['p99_ms']:6.1f} ms | "
                  f"other {o['img_per_s']:6.1f} img/s p50 {o['p50_ms']:6.1f} p99 {o['p99_ms']:6.1f} ms | "
                  f"{_ratios(row)}", file=sys.stderr, flush=True)
    against = Path(args.against).name if args.against.endswith(".py") else f"python -m {args.against}"
    shown = [Path(a).name if a == args.against else a for a in args.argv[1:]]
    report = {"machine": machine.describe(), "command": " ".join(["python -m loadtest versus", shlex.join(shown)]),
              "against": against,
              "other_cores_at_start": other_load, "other_cores_at_end": machine.busy_cores(2.0),
              "repository": repo.name, "trained": all(m.trained for m in repo.members),
              "images": f"{len(corpus.images)} images, mean {corpus.mean_bytes / 1000:.1f} kB",
              "duration_s": args.duration, "rounds": args.rounds, "limit_img_per_s": limit.images_per_s,
              "model_ms": limit.model_s_per_image * 1000, "preprocess_ms": pre_s * 1000,
              "best_model_point": best.as_dict(), "rows": rows}
    report["goals"] = [{"met": met, "goal": text} for met, text in goals(report)]
    for g in report["goals"]:
        print(f"{'met   ' if g['met'] else 'MISSED'} {g['goal']}", file=sys.stderr)
    write_section(args.output, "versus", args.label, render(report))
    write_json(machine.REPO_ROOT / "runs" / f"versus-{args.label}.json", report)
    return 0 if all(r[side]["errors"] == 0 for r in rows for side in SIDES) else 1


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"#### The service beside `{report['against']}`", "",
        f"{m['date']}: `{report['command']}` on {m['cpu']}, {m['cores']} cores, no GPU, commit {m['commit']}; "
        f"1 crop, closed loop, {report['images']}, {report['duration_s']:g} s per server, level and round, "
        f"{report['rounds']} rounds interleaved (the order flips each round), one model file "
        f"({report['repository']}, {'trained' if report['trained'] else 'untrained'} weights). In-process limit "
        f"{report['limit_img_per_s']:.1f} img/s: {report['model_ms']:.2f} core-ms model at its best batch "
        f"({report['best_model_point']['batch']}) + {report['preprocess_ms']:.2f} core-ms decode and crop, over "
        f"every core. Other load: {report['other_cores_at_start']:.2f} cores at the start, "
        f"{report['other_cores_at_end']:.2f} at the end.", "",
        "| clients | service img/s | other img/s | service / other (rounds) | p50 ms service / other "
        "| p99 ms service / other | cores service / other | service / limit | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        s, o = r["service"], r["other"]
        lines.append(
            f"| {r['concurrency']} | {s['img_per_s']:.1f} | {o['img_per_s']:.1f} | {_ratios(r)} | "
            f"{s['p50_ms']:.1f} / {o['p50_ms']:.1f} | {s['p99_ms']:.1f} / {o['p99_ms']:.1f} | "
            f"{s['cores']:.2f} / {o['cores']:.2f} | {s['img_per_s'] / report['limit_img_per_s']:.0%} | "
            f"{s['errors']} / {o['errors']} |")
    lines += ["", *(f"- {'met' if g['met'] else '**missed**'}: {g['goal']}" for g in report["goals"])]
    return "\n".join(lines)
