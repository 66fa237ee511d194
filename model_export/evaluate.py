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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torchvision import datasets
from tqdm import tqdm

from model_export import checkpoint
from model_export.onnx_graph import INPUT, OUTPUT, Deployed
from service.crops import CROP_COUNTS
from service.preprocess import preprocess

Member = Callable[[np.ndarray], np.ndarray]  # uint8 k x 224 x 224 x 3 -> float32 k x classes
MAX_PIXELS = 50_000_000
# Table 3 of the paper (googlenet-spec.md 4.3, recalled figures): top-5 error by (models, crops).
PAPER_TOP5 = {(1, 1): 10.07, (1, 10): 9.15, (1, 144): 7.89, (7, 1): 8.09, (7, 10): 7.62, (7, 144): 6.67}


def torch_member(path: str | Path, *, batch_rows: int = 64) -> Member:
    model = Deployed(checkpoint.inference_model(path)[0]).eval()

    def run(crops: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [
                    model(torch.from_numpy(crops[i : i + batch_rows])).numpy()
                    for i in range(0, len(crops), batch_rows)
                ]
            )

    return run


def onnx_members(repository: str | Path, precision: str = "fp32") -> list[tuple[str, Member]]:
    """The ensemble's members in ensemble.json order, each its highest version's file for `precision`."""
    root = Path(repository)
    names = json.loads((root / "ensemble.json").read_text())["members"]
    members = []
    for name in names:
        record = json.loads((root / name / "model.json").read_text())
        files = sorted(
            (
                (int(f.split("/")[0]), f)
                for f, info in record["files"].items()
                if info["precision"] == precision
            ),
            reverse=True,
        )
        if not files:
            raise FileNotFoundError(f"{name} has no {precision} file")
        session = ort.InferenceSession(str(root / name / files[0][1]), providers=["CPUExecutionProvider"])
        members.append((name, lambda crops, s=session: s.run([OUTPUT], {INPUT: crops})[0]))
    return members


def val_images(data: str | Path, limit: int | None = None) -> datasets.ImageFolder:
    root = Path(data)
    folder = datasets.ImageFolder(str(root / "val" if (root / "val").is_dir() else root), loader=_read_bytes)
    if limit and limit < len(folder.samples):  # an even spread over the (sorted) classes
        folder.samples = [folder.samples[round(i * len(folder.samples) / limit)] for i in range(limit)]
    return folder


def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def collect(
    members: list[Member], images: datasets.ImageFolder, crops: tuple[int, ...], *, progress: bool = True
):
    """probs[(member, crops)]: [images, classes] crop-averaged probabilities; targets: [images]."""
    probs: dict[tuple[int, int], list[np.ndarray]] = {(m, c): [] for m in range(len(members)) for c in crops}
    targets = []
    for data, target in tqdm(images, desc="images", disable=not progress):
        targets.append(target)
        for c in crops:
            batch = preprocess(data, c, max_pixels=MAX_PIXELS)  # c x 224 x 224 x 3 uint8
            for m, run in enumerate(members):
                probs[(m, c)].append(run(batch).mean(axis=0))
    return {k: np.stack(v) for k, v in probs.items()}, np.array(targets)


def table(
    probs: dict[tuple[int, int], np.ndarray],
    targets: np.ndarray,
    models: tuple[int, ...],
    crops: tuple[int, ...],
) -> list[dict]:
    rows = []
    for k in models:
        for c in crops:
            ensemble = np.mean([probs[(m, c)] for m in range(k)], axis=0)  # average over the first k models
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", help="checkpoint.pt files from `train` (ensemble order)")
    source.add_argument("--repository", help="a model repository: its ensemble's ONNX files")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="with --repository")
    p.add_argument("--data", required=True, help="ImageFolder root holding val/ (or the val folder itself)")
    p.add_argument("--crops", default="1,10,144", help="comma-separated subset of 1,10,144")
    p.add_argument("--models", default="1,7", help="ensemble sizes to report (first N members), e.g. 1,2,7")
    p.add_argument("--limit", type=int, help="evaluate this many images, spread over the classes")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> list[dict]:
    crops = tuple(int(c) for c in args.crops.split(","))
    if any(c not in CROP_COUNTS for c in crops):
        raise ValueError(f"--crops takes a subset of {CROP_COUNTS}, got {args.crops}")
    torch.set_flush_denormal(True)
    if args.checkpoints:
        members = [torch_member(p) for p in args.checkpoints]
    else:
        members = [run for _, run in onnx_members(args.repository, args.precision)]
    models = tuple(sorted({min(int(k), len(members)) for k in args.models.split(",")}))
    images = val_images(args.data, args.limit)
    probs, targets = collect(members[: max(models)], images, crops, progress=not args.no_progress)
    rows = table(probs, targets, models, crops)
    print(render(rows, len(targets)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows
