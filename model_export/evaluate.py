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
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torchvision import datasets
from tqdm import tqdm

from model_export import checkpoint, policy
from model_export.onnx_graph import INPUT, OUTPUT, Deployed
from model_export.plot import plot_pareto
from model_export.policy import Cache
from service import stopping
from service.crops import CROP_COUNTS
from service.preprocess import ImageCrops, preprocess
from service.stopping import StoppingRule

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


def onnx_members(
    repository: str | Path, precision: str = "fp32", *, threads: int | None = None
) -> list[tuple[str, Member]]:
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
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(root / name / files[0][1]), options, providers=["CPUExecutionProvider"])
        members.append((name, lambda crops, s=session: s.run([OUTPUT], {INPUT: crops})[0]))
    return members


def val_images(data: str | Path, limit: int | None = None, *, split: str = "val") -> datasets.ImageFolder:
    root = Path(data)
    folder = datasets.ImageFolder(str(root / split if (root / split).is_dir() else root), loader=_read_bytes)
    if limit and limit < len(folder.samples):  # an even spread over the (sorted) classes
        folder.samples = [folder.samples[round(i * len(folder.samples) / limit)] for i in range(limit)]
    return folder


def _read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def collect(
    members: list[Member], images: Iterable[tuple[bytes, int]], crops: tuple[int, ...], *,
    names: list[str] | None = None, progress: bool = True,
) -> Cache:
    """Each member's crop-averaged probabilities at every crop count, one run per image and member.

    The rows are the 1-crop protocol's crop, then `nested_plan`'s first max(crops) crops: their
    first 10 are the 10-crop protocol's and all 144 the 144-crop protocol's (service/crops.py),
    so every fixed count and every adaptive rung comes from the same outputs. Only where a large
    JPEG decodes to another size for 10 crops than for 144 (DCT scaling) do its 10 run apart.
    """
    top = max(crops)
    keys = ["1", *(["1n"] if top > 1 else []), *(k for k in ("10", "144") if int(k) <= top)]
    probs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    targets = []
    for data, target in tqdm(images, desc="images", disable=not progress):
        targets.append(target)
        parts = [preprocess(data, 1, max_pixels=MAX_PIXELS)]  # 1 x 224 x 224 x 3 uint8
        if top > 1:
            nested = ImageCrops(data, top, nested=True, max_pixels=MAX_PIXELS).rows(0, top)
            parts.append(nested)
            if top == 144 and 10 in crops:
                ten = ImageCrops(data, 10, nested=True, max_pixels=MAX_PIXELS).rows(0, 10)
                if not np.array_equal(ten, nested[:10]):
                    parts.append(ten)
        batch = np.concatenate(parts)
        outputs = np.stack([run(batch) for run in members])  # members x rows x classes
        means = {"1": outputs[:, 0]}
        if top > 1:
            means["1n"] = outputs[:, 1]
            means["10"] = outputs[:, 1:11].mean(axis=1) if len(parts) == 2 else outputs[:, 1 + top :].mean(axis=1)
            if top == 144:
                means["144"] = outputs[:, 1:145].mean(axis=1)
        for k in keys:
            probs[k].append(means[k])
    stacked = {k: np.stack(v, axis=1).astype(np.float32) for k, v in probs.items()}  # members x images x classes
    return Cache(stacked, np.array(targets), names or [f"member-{i}" for i in range(len(members))])


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


def load_members(args: argparse.Namespace) -> tuple[list[Member], list[str]]:
    """The members and what identifies them (checkpoint paths, or names and file hashes)."""
    if args.checkpoints:
        return [torch_member(p) for p in args.checkpoints], [str(Path(p).resolve()) for p in args.checkpoints]
    found = onnx_members(args.repository, args.precision)
    root = Path(args.repository)
    ids = [f"{name}:{json.dumps(json.loads((root / name / 'model.json').read_text())['files'], sort_keys=True)}"
           for name, _ in found]
    return [run for _, run in found], ids


def cached_collect(args: argparse.Namespace, crops: tuple[int, ...], models: int) -> Cache:
    """`collect`, or its result from --cache when that was made from the same members, images and crops."""
    members, ids = load_members(args)
    images = val_images(args.data, args.limit, split=args.split)
    key = json.dumps({"members": ids[:models], "images": [p for p, _ in images.samples], "crops": crops})
    path = Path(args.cache) if args.cache else None
    if path is not None and path.is_file():
        with np.load(path) as saved:
            if str(saved["key"]) == key:
                probs = {k.removeprefix("probs_"): saved[k] for k in saved.files if k.startswith("probs_")}
                return Cache(probs, saved["targets"], json.loads(str(saved["names"])))
    names = [i.split(":")[0] for i in ids[:models]]
    if getattr(args, "jobs", 1) > 1:
        source = {"checkpoints": args.checkpoints, "repository": args.repository, "precision": args.precision}
        cache = collect_in_processes(source, images.samples, crops, models, names, args.jobs)
    else:
        cache = collect(members[:models], images, crops, names=names, progress=not args.no_progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, key=key, targets=cache.targets, names=json.dumps(cache.members),
                 **{f"probs_{k}": v for k, v in cache.probs.items()})
    return cache


def collect_in_processes(
    source: dict, samples: list[tuple[str, int]], crops: tuple[int, ...], models: int, names: list[str], jobs: int
) -> Cache:
    """`collect` split over `jobs` processes, each with its own members on one thread (one session
    per core beats one session on every core for these batches): image i goes to process i % jobs."""
    context = multiprocessing.get_context("spawn")  # no threads of this process carried into a fork
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        shards = list(pool.map(_shard, [(source, samples[i::jobs], crops, models, names) for i in range(jobs)]))
    probs = {}
    for key in shards[0].probs:
        merged = np.empty((models, len(samples), shards[0].probs[key].shape[2]), dtype=np.float32)
        for i, shard in enumerate(shards):
            merged[:, i::jobs] = shard.probs[key]
        probs[key] = merged
    return Cache(probs, np.array([t for _, t in samples]), names)


def _shard(work: tuple[dict, list[tuple[str, int]], tuple[int, ...], int, list[str]]) -> Cache:
    source, samples, crops, models, names = work
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if source["checkpoints"]:
        members = [torch_member(p) for p in source["checkpoints"]]
    else:
        members = [run for _, run in onnx_members(source["repository"], source["precision"], threads=1)]
    images = [(Path(path).read_bytes(), target) for path, target in samples]
    return collect(members[:models], images, crops, names=names, progress=False)


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


def onnx_members_names(repository: str | Path) -> list[str]:
    return json.loads((Path(repository) / "ensemble.json").read_text())["members"]
