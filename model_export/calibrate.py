"""`calibrate`: the stopping thresholds of the service's adaptive walks (crops=/ensemble=adaptive),
measured on held-out images and written to the repository's adaptive.json (service/stopping.py).

    python -m model_export calibrate --repository runs/t3/repository --data runs/t3/textures --split calibration

Every member's probabilities at every crop count are computed once per image (`probabilities.collect`);
each walk is then replayed for every combination of thresholds (model_export/policy.py). For each
walk the cheapest thresholds, in mean evaluations per image, whose top-1 error stays within
--max-error-increase points of the walk's top rung are kept. Use other images than the ones
`evaluate` reports on: thresholds chosen on the images they are judged on flatter themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from model_export import policy, probabilities
from service import stopping
from service.crops import CROP_COUNTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", required=True, help="the model repository: read, and adaptive.json written")
    p.add_argument("--data", required=True, help="ImageFolder root holding the held-out split")
    p.add_argument("--split", default="calibration", help="its folder (default calibration; make-dataset writes it)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--limit", type=int, help="this many images, spread over the classes")
    p.add_argument("--max-error-increase", type=float, default=0.0,
                   help="top-1 error points a walk may lose against its top rung (default 0)")
    p.add_argument("--cache", help="probabilities of every image: read from this .npz when it matches, else written")
    p.add_argument("--jobs", type=int, default=1, help="processes sharing the images, one thread each")
    p.add_argument("--dry-run", action="store_true", help="print the thresholds, write nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(checkpoints=None)


def render(thresholds: dict[str, float], report: list[dict], images: int) -> str:
    lines = [
        f"Stopping thresholds (margin of the averaged softmax) on {images} held-out images",
        "",
        "| rungs | top rung top-1 error | walk top-1 error | mean evaluations | p99 evaluations |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report:
        lines.append(
            f"| {' > '.join(r['rungs'])} | {100 * r['top_rung_top1_error']:.2f}% | {100 * r['top1_error']:.2f}% | "
            f"{r['mean_evaluations']:.1f} | {r['p99_evaluations']:.0f} |"
        )
    shown = ", ".join(f"{k}: {'never' if v > 1 else f'{v:.4f}'}" for k, v in thresholds.items())
    return "\n".join([*lines, "", f"thresholds: {shown}"])


def write(root: Path, document: dict) -> Path:
    """adaptive.json, replaced whole (a temporary file renamed), readable by the service's user."""
    path = root / stopping.FILE
    fd, tmp = tempfile.mkstemp(prefix=".adaptive-", dir=root)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(document, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def main(args: argparse.Namespace) -> dict:
    torch.set_flush_denormal(True)
    root = Path(args.repository)
    count = len(probabilities.onnx_members_names(root))
    cache = probabilities.cached_collect(args, CROP_COUNTS, count)
    thresholds, report = policy.calibrate(cache, max_error_increase=args.max_error_increase / 100)
    full = policy.Replay(cache, policy.walks(count)[0])
    document = stopping.document(
        thresholds,
        calibration={
            "images": len(cache.targets),
            "data": f"{Path(args.data).resolve().name}/{args.split}",  # a name, not a path of this machine
            "max_error_increase_points": args.max_error_increase,
            "walks": report,
            "frontier": policy.frontier(full),  # the cheapest thresholds at each error the full walk reaches
        },
    )
    print(render(thresholds, report, len(cache.targets)))
    if not args.dry_run:
        print(f"wrote {write(root, document)}")
    return document
