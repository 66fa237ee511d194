"""`export`: one model to `<name>/<version>/model.onnx` (+ fp16) and `<name>/model.json`, checked first.

    python -m model_export export --checkpoint runs/googlenet-0/checkpoint.pt --name googlenet-0
    python -m model_export export --torchvision-weights googlenet-1378be20.pth --name googlenet-0
    python -m model_export export --random-init --seed 3 --width 1.25 --name googlenet-6

Every file is compared with the torch model on real images (or generated ones when none are at
hand) before it is written; the result goes into model.json next to its sha256 (model-repository.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from model_export import checkpoint, onnx_graph
from model_export.data import IMAGENET_MEAN, IMAGENET_STD
from model_export.model import VARIANTS, GoogLeNet, GoogLeNetConfig, build, load_torchvision_weights
from model_export.synthetic import CLASSES as TEXTURES
from model_export.synthetic import texture
from service.contract import ITEM_SHAPE
from service.preprocess import crops_from_image, preprocess

PRECISIONS = ("fp32", "fp16")
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
# Largest |probability difference| allowed before a file is written. fp32 runs the same arithmetic
# in another order; fp16 keeps ~3 significant digits through 22 layers.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
# Real photos sit next to the repository in development checkouts (../shared/data); never committed.
DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-samples"
MAX_PIXELS = 50_000_000


class ParityError(RuntimeError):
    pass


def parity_images(count: int = 8, directory: str | Path | None = None) -> tuple[np.ndarray, str]:
    """uint8 [count, 224, 224, 3] center crops (the service's 1-crop geometry), and where they came from."""
    folder = Path(directory) if directory else DEFAULT_IMAGES
    files = (
        sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if folder.is_dir()
        else []
    )
    if files:
        picked = [
            files[round(i * len(files) / count)] for i in range(min(count, len(files)))
        ]  # spread over classes
        crops = [preprocess(p.read_bytes(), 1, max_pixels=MAX_PIXELS)[0] for p in picked]
        return np.stack(crops), f"{len(crops)} photos from {folder.name}/"
    if directory:
        raise FileNotFoundError(f"no images in {directory}")
    rng = np.random.default_rng(0)
    crops = [crops_from_image(texture(TEXTURES[i % len(TEXTURES)], rng, 320, 256), 1)[0] for i in range(count)]
    return np.stack(crops), f"{count} generated texture images"


def reference(model: GoogLeNet, images: np.ndarray) -> np.ndarray:
    """The torch float32 probabilities the exported files are compared with."""
    with torch.inference_mode():
        return onnx_graph.Deployed(model.eval())(torch.from_numpy(images)).numpy()


def check_parity(
    onnx_bytes: bytes, images: np.ndarray, expected: np.ndarray, precision: str, source: str
) -> dict:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run([onnx_graph.OUTPUT], {onnx_graph.INPUT: images})[0]
    if got.dtype != np.float32 or got.shape != expected.shape:
        raise ParityError(f"{precision}: output {got.dtype} {got.shape}, expected float32 {expected.shape}")
    result = {
        "reference": "torch float32",
        "images": source,
        "max_abs_diff": float(np.abs(got - expected).max()),
        "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
        "max_sum_error": float(np.abs(got.sum(1) - 1).max()),
        "tolerance": TOLERANCE[precision],
    }
    result["passed"] = result["max_abs_diff"] <= TOLERANCE[precision]
    if not result["passed"]:
        raise ParityError(f"{precision} export differs from torch: {result}")
    return result


def write_member(
    root: str | Path,
    name: str,
    model: GoogLeNet,
    *,
    weights: dict[str, Any],
    trained: bool,
    precisions: tuple[str, ...] = PRECISIONS,
    images: tuple[np.ndarray, str] | None = None,
    exporter: onnx_graph.Exporter | None = None,
    version: int = 1,
) -> dict[str, Any]:
    """Export, check and write one repository member; returns its model.json record."""
    exporter = exporter or onnx_graph.Exporter()
    pixels, source = images or parity_images()
    expected = reference(model, pixels)
    proto = exporter(model)
    folder = Path(root) / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    files = {}
    for precision in precisions:
        data = onnx_graph.serialize(proto if precision == "fp32" else onnx_graph.to_fp16(proto))
        parity = check_parity(data, pixels, expected, precision, source)  # before anything is written
        relative = f"{version}/{FILES[precision]}"
        (folder / relative).write_bytes(data)
        files[relative] = {
            "precision": precision,
            "sha256": hashlib.sha256(data).hexdigest(),  # of the bytes just written
            "bytes": len(data),
            "parity": parity,
        }
    record = {
        "name": name,
        "architecture": model.config.variant,
        "width_multiplier": model.config.width,
        # In [0, 1] units, applied inside the graph; one mean/std for both variants (data.py).
        "input": {
            "name": onnx_graph.INPUT,
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": [-1, *ITEM_SHAPE],
            "color": "RGB",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "output": {
            "name": onnx_graph.OUTPUT,
            "dtype": "float32",
            "classes": model.config.num_classes,
            "softmax": True,
        },
        "files": files,
        "trained": trained,
        "weights": weights,
        "opset": onnx_graph.OPSET,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (folder / "model.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def from_checkpoint(path: str | Path) -> tuple[GoogLeNet, dict[str, Any], bool]:
    """A training checkpoint's averaged model, its model.json "weights" record, and whether it was trained."""
    model, state = checkpoint.inference_model(path)
    last = state["history"][-1] if state.get("history") else {}
    weights = {
        "source": "checkpoint",
        "file": Path(path).name,
        "seed": state.get("args", {}).get("seed"),
        "dataset": state.get("dataset"),
        "classes": len(state.get("classes", [])),
        "epochs": state.get("epoch", 0),
        "recipe": state.get("recipe", {}),
        "top1": last.get("val_top1"),
        "top5": last.get("val_top5"),
    }
    return model, weights, weights["epochs"] > 0


def from_torchvision(path: str | Path) -> tuple[GoogLeNet, dict[str, Any], bool]:
    data = Path(path).read_bytes()
    weights = {
        "source": "torchvision",
        "file": Path(path).name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "dataset": "ImageNet-1K (ILSVRC-2012)",
    }
    if weights["sha256"].startswith("1378be20"):  # torchvision names files by their hash prefix
        weights |= {"published_top1": 0.69778, "published_top5": 0.8953}  # torchvision docs, 1 crop
    return load_torchvision_weights(str(path)).eval(), weights, True


def from_seed(variant: str, width: float, seed: int) -> tuple[GoogLeNet, dict[str, Any], bool]:
    model = build(GoogLeNetConfig(variant=variant, width=width, aux_logits=False), seed=seed).eval()
    init = "caffe-xavier" if variant == "paper" else "torchvision"
    return model, {"source": "random-init", "seed": seed, "init": init}, False


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", help="a checkpoint.pt written by `train` (its Polyak-averaged weights)"
    )
    source.add_argument("--torchvision-weights", help="local googlenet-1378be20.pth (never downloaded)")
    source.add_argument("--random-init", action="store_true", help="seeded random weights: UNTRAINED")
    p.add_argument("--variant", choices=VARIANTS, default="paper", help="with --random-init")
    p.add_argument("--width", type=float, default=1.0, help="with --random-init")
    p.add_argument("--seed", type=int, default=0, help="with --random-init")
    p.add_argument("--output", default="model_repository", help="repository root")
    p.add_argument("--name", default="googlenet-0", help="member folder name")
    p.add_argument("--version", type=int, default=1, help="version folder")
    p.add_argument("--precision", default="fp32,fp16", help="comma-separated: fp32, fp16")
    p.add_argument(
        "--parity-images",
        help="folder of images for the parity check (default: ../shared/data "
        "samples next to the repository, else generated images)",
    )
    p.add_argument("--parity-count", type=int, default=16)


def parse_precisions(text: str) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    if not chosen or any(p not in PRECISIONS for p in chosen):
        raise ValueError(f"--precision takes a comma-separated subset of {PRECISIONS}, got {text!r}")
    return chosen


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.checkpoint:
        model, weights, trained = from_checkpoint(args.checkpoint)
    elif args.torchvision_weights:
        model, weights, trained = from_torchvision(args.torchvision_weights)
    else:
        model, weights, trained = from_seed(args.variant, args.width, args.seed)
    record = write_member(
        args.output,
        args.name,
        model,
        weights=weights,
        trained=trained,
        precisions=parse_precisions(args.precision),
        version=args.version,
        images=parity_images(args.parity_count, args.parity_images),
    )
    for file, info in record["files"].items():
        p = info["parity"]
        print(
            f"{args.output}/{args.name}/{file}: {info['bytes']:,} bytes, vs torch on {p['images']}: "
            f"max |dp| {p['max_abs_diff']:.2e}, top-1 agreement {p['top1_agreement']:.0%}"
        )
    if not trained:
        print('WARNING: random-init weights, NOT TRAINED (model.json says "trained": false)')
    print(f"done in {time.perf_counter() - started:.1f} s")
