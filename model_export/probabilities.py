"""Every member's crop-averaged probabilities at every crop count, computed once per image: what
`evaluate` and `calibrate` derive every fixed rung and every adaptive policy from.

Crops come from the service's own code (`service.preprocess`, `service.crops`), so a number derived
here is what the service computes for the same image. `--cache` keeps the result as .npz, and
`--jobs` shares the images over processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torchvision import datasets
from tqdm import tqdm

from model_export import checkpoint
from model_export.onnx_graph import INPUT, OUTPUT, Deployed
from service.preprocess import ImageCrops, preprocess

Member = Callable[[np.ndarray], np.ndarray]  # uint8 k x 224 x 224 x 3 -> float32 k x classes
MAX_PIXELS = 50_000_000


@dataclass
class Cache:
    """probs[key]: [members, images, classes] crop means; keys "1" (the 1-crop protocol), "1n" (the
    centre of the 10, a nested walk's first rung), "10", "144"."""

    probs: dict[str, np.ndarray]
    targets: np.ndarray
    members: list[str]

    def rung(self, crops: int, models: int, *, nested: bool = False) -> np.ndarray:
        """[images, classes]: the average a complete rung gives (crops, then the first `models` members)."""
        key = "1n" if crops == 1 and nested else str(crops)
        return self.probs[key][:models].mean(axis=0, dtype=np.float64)



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
        members.append((name, _chunked(session)))
    return members


def _chunked(session: ort.InferenceSession, batch_rows: int = 16) -> Member:
    """Rows in batches of `batch_rows`: a CPU session's arena grows with its largest batch (~3.5 GB
    for 144 crops of the full-width network), and every member keeps its own."""

    def run(crops: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [session.run([OUTPUT], {INPUT: crops[i : i + batch_rows]})[0] for i in range(0, len(crops), batch_rows)]
        )

    return run


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


def onnx_members_names(repository: str | Path) -> list[str]:
    return json.loads((Path(repository) / "ensemble.json").read_text())["members"]
