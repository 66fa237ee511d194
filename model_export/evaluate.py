"""`evaluate`: top-1/top-5 error for 1, 10 and 144 crops and ensembles of 1..7 models, laid out like Table 3.

    python -m model_export evaluate --data /data/imagenet --repository model_repository --crops 1,10,144
    python -m model_export evaluate --data shapes --checkpoints runs/m*/checkpoint.pt --limit 200

Crops come from the service's own code (`service.preprocess`, `service.crops`), so a number printed
here is what the service computes for the same image. Probabilities are averaged over crops, then
over models (paper section 7).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from model_export import policy
from model_export.plot import plot_pareto
from model_export.probabilities import Cache, cached_collect, onnx_members_names
from service import stopping
from service.crops import CROP_COUNTS
from service.stopping import StoppingRule

# Table 3 of the paper (docs/googlenet.md 4, recalled figures): top-5 error by (models, crops).
PAPER_TOP5 = {(1, 1): 10.07, (1, 10): 9.15, (1, 144): 7.89, (7, 1): 8.09, (7, 10): 7.62, (7, 144): 6.67}


def table(cache: Cache, models: tuple[int, ...], crops: tuple[int, ...]) -> list[dict]:
    rows = []
    targets = cache.targets
    for k in models:
        for c in crops:
            ensemble = cache.rung(c, k)  # crops, then the first k models
            top5 = np.argsort(-ensemble, axis=1)[:, :5]
            rows.append(
                {
                    "models": k,
                    "crops": c,
                    "cost": k * c,
                    "top1_error": float((top5[:, 0] != targets).mean()),
                    "top5_error": float((top5 != targets[:, None]).all(axis=1).mean()),
                    "paper_top5_error": PAPER_TOP5.get((k, c)),
                }
            )
    base = rows[0]["top5_error"]
    for r in rows:
        r["delta_top5"] = r["top5_error"] - base
    return rows


def adaptive_rows(cache: Cache, rule: StoppingRule) -> list[dict]:
    """The service's adaptive walks under `rule`: error, mean and p99 evaluations per image."""
    rows = []
    for walk in policy.walks(len(cache.members)):
        outcome = policy.Replay(cache, walk).outcome(rule)
        rows.append({"rungs": [m.label for m in walk], **outcome.row(),
                     "stopped": {m.label: int((outcome.stopped == i).sum()) for i, m in enumerate(walk)}})
    return rows


def render(rows: list[dict], images: int) -> str:
    lines = [
        f"{images} validation images; probabilities averaged over crops, then over models",
        "",
        "| models | crops | cost | top-1 error | top-5 error | compared to base | paper top-5 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        delta = "base" if i == 0 else f"{100 * r['delta_top5']:+.2f}%"
        paper = "" if r["paper_top5_error"] is None else f"{r['paper_top5_error']:.2f}%"
        lines.append(
            f"| {r['models']} | {r['crops']} | {r['cost']} | {100 * r['top1_error']:.2f}% | "
            f"{100 * r['top5_error']:.2f}% | {delta} | {paper} |"
        )
    return "\n".join(lines)


def render_adaptive(rows: list[dict], rule: StoppingRule) -> str:
    source = "the repository's adaptive.json" if rule.calibrated else f"no adaptive.json: margin {rule.default:g}"
    lines = [
        f"Adaptive walks (crops=/ensemble=adaptive), thresholds from {source}",
        "",
        "| rungs | top-1 error | top-5 error | mean evaluations | p99 evaluations | images stopped per rung |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        stopped = ", ".join(f"{label}: {n}" for label, n in r["stopped"].items())
        lines.append(
            f"| {' > '.join(r['rungs'])} | {100 * r['top1_error']:.2f}% | {100 * r['top5_error']:.2f}% | "
            f"{r['mean_evaluations']:.1f} | {r['p99_evaluations']:.0f} | {stopped} |"
        )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", help="checkpoint.pt files from `train` (ensemble order)")
    source.add_argument("--repository", help="a model repository: its ensemble's ONNX files")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="with --repository")
    p.add_argument("--data", required=True, help="ImageFolder root holding val/ (or the val folder itself)")
    p.add_argument("--split", default="val", help="the folder of --data to read (default val)")
    p.add_argument("--crops", default="1,10,144", help="comma-separated subset of 1,10,144")
    p.add_argument("--models", default="1,7", help="ensemble sizes to report (first N members), e.g. 1,2,7")
    p.add_argument("--limit", type=int, help="evaluate this many images, spread over the classes")
    p.add_argument("--adaptive", action="store_true",
                   help="also the adaptive walks, with the repository's adaptive.json (or the defaults)")
    p.add_argument("--sweep", help="with --adaptive: comma-separated margins, one threshold at every rung each")
    p.add_argument("--plot", help="with --adaptive: write the error / mean evaluations Pareto plot (PNG) here")
    p.add_argument("--cache", help="probabilities of every image: read from this .npz when it matches, else written")
    p.add_argument("--jobs", type=int, default=1, help="processes sharing the images, one thread each")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> list[dict]:
    crops = tuple(int(c) for c in args.crops.split(","))
    if any(c not in CROP_COUNTS for c in crops):
        raise ValueError(f"--crops takes a subset of {CROP_COUNTS}, got {args.crops}")
    if args.adaptive and set(crops) != set(CROP_COUNTS):
        raise ValueError(f"--adaptive walks every crop count: --crops {','.join(map(str, CROP_COUNTS))}")
    torch.set_flush_denormal(True)
    count = len(args.checkpoints) if args.checkpoints else len(onnx_members_names(args.repository))
    models = tuple(sorted({min(int(k), count) for k in args.models.split(",")}))
    cache = cached_collect(args, crops, max(models) if not args.adaptive else count)
    rows = table(cache, models, crops)
    print(render(rows, len(cache.targets)))
    if not args.adaptive:
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        return rows
    rule = stopping.read(Path(args.repository)) if args.repository else StoppingRule()
    walked = adaptive_rows(cache, rule)
    print("\n" + render_adaptive(walked, rule))
    every = table(cache, tuple(range(1, count + 1)), crops)  # every fixed rung, for the plot
    margins = [float(m) for m in args.sweep.split(",")] if args.sweep else []
    curve = policy.sweep(cache, policy.walks(count)[0], margins) if margins else []
    if args.plot:
        plot_pareto(every, curve, walked[0], args.plot, images=len(cache.targets))
    if args.json:
        document = {"fixed": rows, "every_fixed": every, "adaptive": walked, "sweep": curve,
                    "thresholds": dict(rule.thresholds), "calibrated": rule.calibrated, "images": len(cache.targets)}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return rows


