"""`python -m loadtest bench`: the benchmark suite in one run (docs/loadtest.md): (a) the model alone,
(b) preprocessing alone, (c) the service in every mode, (d) a naive baseline under the same load;
ratios to the machine's limit and to the baseline, written to docs/benchmarks.md with plots."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import benchdoc, goals, machine, profiling
from loadtest.ceiling import limit_for, model_ceiling_cpu, preprocess_cost
from loadtest.images import load_corpus
from loadtest.mix import Mode
from loadtest.phases import Phases
from loadtest.servers import ServerProcess
from service.repository import load_repository

DOCS = machine.REPO_ROOT / "docs"
RUNS = machine.REPO_ROOT / "runs"  # git-ignored: server logs and profiles of the last run
# Heavy modes: closed loop of `concurrency` clients for a fixed count of requests, timed from the
# first send to the last answer (a 144x7 request is ~1,000 evaluations: a time window would hold
# only a few answers, and would cut one in half).
# Admission is by estimated time (README, max_queue_wait_ms): these client counts all fit its default.
HEAVY_PLAN = {"10x1": (4, 48), "1x7": (8, 96), "10x7": (4, 16), "144x1": (1, 6), "144x7": (1, 2)}


@dataclass
class BenchConfig:
    model_repository: Path
    images: Path | None = None
    output: Path = DOCS / "benchmarks.md"
    plots: Path = DOCS / "benchmarks"
    concurrencies: tuple[int, ...] = (1, 4, 16, 64)
    modes: tuple[str, ...] = tuple(HEAVY_PLAN)
    phase_s: float = 15.0
    warmup_s: float = 3.0
    scale: float = 1.0  # multiplies request counts of the heavy modes (tests use less)
    ceiling_s: float = 4.0
    profile_s: float = 10.0
    baseline: bool = True
    wait_quiet_s: float = 0.0
    service_args: list[str] = field(default_factory=list)
    command: str = "python -m loadtest bench"
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchConfig:
        quick = args.quick
        return cls(
            model_repository=args.model_repository, images=args.images, output=args.output, plots=args.plots,
            concurrencies=tuple(args.concurrency), modes=tuple(args.modes),
            phase_s=2.0 if quick else args.phase_s, warmup_s=0.5 if quick else args.warmup_s,
            scale=0.25 if quick else 1.0, ceiling_s=0.5 if quick else 4.0,
            profile_s=0.0 if args.no_profile else (2.0 if quick else 10.0), baseline=not args.no_baseline,
            wait_quiet_s=args.wait_quiet,
            service_args=shlex.split(args.service_args), command=" ".join(["python -m loadtest", *args.argv]),
        )


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                        help="the GoogLeNet repository (python -m model_export build-repository)")
    parser.add_argument("--images", type=Path, help="JPEG folder (default ../shared/data/imagenet-samples)")
    parser.add_argument("--output", type=Path, default=DOCS / "benchmarks.md", help="the report (markdown)")
    parser.add_argument("--plots", type=Path, default=DOCS / "benchmarks", help="folder for the PNG plots")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64], help="1-crop client counts")
    parser.add_argument("--modes", nargs="*", default=list(HEAVY_PLAN), type=lambda m: Mode.parse(m).name,
                        help=f"other modes, CROPSxMODELS (default {' '.join(HEAVY_PLAN)})")
    parser.add_argument("--phase-s", type=float, default=15.0, help="seconds measured per 1-crop phase")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="seconds before each phase, not measured")
    parser.add_argument("--service-args", default="", help="extra flags for python -m service, quoted")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline (d)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the service")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for other work on the machine to stop first")
    parser.add_argument("--quick", action="store_true", help="seconds-long phases: checks the pipeline, not speed")


def _one_crop_suites(suites: dict[str, Phases], config: BenchConfig) -> dict[str, dict[str, Any]]:
    """Closed loop at each concurrency, then open loop at 70% and 150% of the service's capacity,
    each phase run on every server in turn (both are up), so a shared machine's drift lands on
    both sides of a ratio instead of on the server measured last."""
    out: dict[str, dict[str, Any]] = {label: {"closed": {}} for label in suites}
    for c in config.concurrencies:
        for label, phases in suites.items():
            out[label]["closed"][c] = phases.run(f"1x1 concurrency {c}", "1x1", concurrency=c)
    for label in suites:
        out[label]["capacity_rps"] = max(r["throughput_rps"] for r in out[label]["closed"].values())
    capacity = out["service"]["capacity_rps"]  # the same offered loads for every server
    for key, name, share, extra in (
        ("at_70", "1x1 open 70% capacity", 0.7, {"duration_s": 2 * config.phase_s}),
        ("overload", "1x1 open 150% capacity", 1.5, {"timeout_s": 60.0, "max_outstanding": 4096}),
    ):
        for label, phases in suites.items():
            out[label][key] = phases.run(name, "1x1", rate=share * capacity, **extra)
    return out


def _mixed(phases: Phases, config: BenchConfig, capacity: float, members: int) -> dict[str, Any]:
    """1-crop clients at 70% of capacity while one client sends 144x7 requests back to back
    (a heavy request must not hold light ones behind it): the 1-crop tail next to the same load without it (`at_70`)."""
    box: dict[str, Any] = {}
    heavy = threading.Thread(target=lambda: box.update(heavy=phases.run(
        f"144x{members} beside 1x1", f"144x{members}", concurrency=1, requests=max(1, round(config.scale)),
        duration_s=None, warmup_s=0.0, timeout_s=600.0)))
    heavy.start()
    light = phases.run("1x1 open 70% + 144x7", "1x1", rate=0.7 * capacity, duration_s=2 * config.phase_s)
    heavy.join()
    return {"light": light, "heavy": box.get("heavy")}


def _heavy_modes(phases: Phases, config: BenchConfig) -> dict[str, Any]:
    out = {}
    for name in config.modes:
        # ~600 evaluations per mode outside the plan: seconds at GoogLeNet's CPU speed.
        concurrency, count = HEAVY_PLAN.get(name, (4, max(4, 600 // Mode.parse(name).evaluations)))
        count = max(concurrency, round(count * config.scale))
        out[name] = phases.run(f"{name} x{count} requests", name, concurrency=concurrency, requests=count,
                               duration_s=None, warmup_s=0.0, timeout_s=600.0)
    return out


def _profile(phases: Phases, config: BenchConfig, concurrency: int) -> dict[str, Any] | None:
    """A separate profiled run (py-spy costs CPU too: its numbers stay out of the tables)."""
    if config.profile_s <= 0 or profiling.py_spy() is None:
        return None

    folded = RUNS / "bench-profile.folded"
    rate, box = 100, {}
    sampler = threading.Thread(target=lambda: box.update(
        path=profiling.record(phases.server.pid, config.profile_s, folded, rate=rate)))
    sampler.start()
    phases.run(f"1x1 c{concurrency} (profiled)", "1x1", concurrency=concurrency,
               duration_s=config.profile_s, warmup_s=0.0)
    sampler.join(config.profile_s + 90)
    path = box.get("path")
    if not path:
        return None
    return {"concurrency": concurrency, "seconds": config.profile_s,
            **profiling.summarize(path, rate=rate, duration_s=config.profile_s)}


def _wait_quiet(limit_s: float, say: Callable[[str], None], threshold_cores: float = 0.2, samples: int = 3) -> float:
    """Wait (at most `limit_s`) until other work on the machine stays under `threshold_cores` for
    `samples` 2-second samples in a row; the other load measured last."""
    deadline, quiet = time.monotonic() + limit_s, 0
    while True:
        busy = machine.busy_cores(2.0)
        quiet = quiet + 1 if busy < threshold_cores else 0
        if quiet >= samples or time.monotonic() >= deadline:
            return busy
        if quiet == 0:
            say(f"the machine is busy with other work ({busy:.2f} cores); waiting for it to settle")


def run_bench(config: BenchConfig) -> int:
    started = time.monotonic()
    repo = load_repository(config.model_repository)
    members = len(repo.members)
    modes = [m for m in config.modes if Mode.parse(m).models <= members]
    config = dataclasses.replace(config, modes=tuple(modes))
    corpus = load_corpus(config.images)
    config.plots.mkdir(parents=True, exist_ok=True)
    RUNS.mkdir(exist_ok=True)
    log = RUNS / "bench-server.log"
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if config.progress else (lambda text: None)
    report: dict[str, Any] = {"machine": machine.describe(), "command": config.command,
                              "images": {"source": corpus.source, "count": len(corpus.images)},
                              "repository": {"name": repo.name, "members": members,
                                             "trained": all(m.trained for m in repo.members)}}
    report["machine"]["other_cores_at_start"] = _wait_quiet(config.wait_quiet_s, say)
    cores = machine.cores()

    say("(a) the model alone in ONNX Runtime")
    points = model_ceiling_cpu(repo.members[0].path, cores=cores, duration_s=config.ceiling_s)
    best = max(points, key=lambda p: p.images_per_s)
    report["model"] = {"points": [p.as_dict() for p in points], "best": best.as_dict()}

    say("(b) preprocessing alone")
    crops_needed = sorted({1, *(Mode.parse(m).crops for m in modes)})
    pre = {c: preprocess_cost(corpus.images, c, max_images={1: 100, 10: 50, 144: 10}[c]) for c in crops_needed}
    report["preprocess_ms"] = {c: s * 1000 for c, s in pre.items()}
    limits = {m: limit_for(m, Mode.parse(m).evaluations, best_images_per_s=best.images_per_s, cores=cores,
                           preprocess_s=pre[Mode.parse(m).crops]) for m in ["1x1", *modes]}
    report["limits"] = {m: dataclasses.asdict(v) for m, v in limits.items()}

    def phases(server: ServerProcess, label: str) -> Phases:
        return Phases(server, corpus, phase_s=config.phase_s, warmup_s=config.warmup_s, progress=config.progress,
                      label=label)

    say("(c) the service" + (" and (d) the naive baseline, phase by phase" if config.baseline else ""))
    # The service runs with its defaults: they must serve every mode measured here.
    service_cmd = ["--model-repository", str(config.model_repository), "--providers", "cpu",
                   "--log-level", "warning", *config.service_args]
    baseline_cmd = ["--model-repository", str(config.model_repository), "--providers", "cpu"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ServerProcess("service", service_cmd, log=log))
        suites = {"service": phases(server, "service")}
        if config.baseline:
            base_log = RUNS / "bench-baseline.log"
            base = stack.enter_context(ServerProcess("loadtest.baseline", baseline_cmd, log=base_log))
            suites["baseline"] = phases(base, "baseline")
        report.update(_one_crop_suites(suites, config))
        if config.baseline:  # the rest is the service's alone: the baseline's memory goes back now
            base.stop()
        report["service"]["mixed"] = _mixed(phases(server, "service"), config, report["service"]["capacity_rps"],
                                            members)
        with urllib.request.urlopen(f"{server.url}/v1/models", timeout=10) as answer:
            report["max_queue_wait_ms"] = json.load(answer)["batching"]["max_queue_wait_ms"]
        report["service"]["modes"] = _heavy_modes(phases(server, "service"), config)
        profiled = 32 if 32 in config.concurrencies else config.concurrencies[-1]
        report["profile"] = _profile(phases(server, "service"), config, profiled)
    report["duration_s"] = time.monotonic() - started
    benchdoc.write(report, config.output, config.plots)
    one = report["limits"]["1x1"]["images_per_s"]
    for c, r in report["service"]["closed"].items():
        server = r["server"] or {}
        p50, p99 = r["latency_ms"].get("p50", 0), r["latency_ms"].get("p99", 0)
        say(f"1 crop, concurrency {c:3d}: {r['throughput_rps']:6.1f} img/s = {r['throughput_rps'] / one:4.0%} of the "
            f"{one:.1f} img/s limit, p50 {p50:7.1f} ms, p99 {p99:7.1f} ms, "
            f"mean batch {server.get('mean_batch_rows') or 0:.2f} rows")
    for g in goals.evaluate(report):
        say(f"{'met   ' if g.met else 'MISSED'} {g.goal}: {g.measured}")
    say(f"wrote {config.output} in {report['duration_s'] / 60:.1f} min")
    return 0
