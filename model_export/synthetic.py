"""A generated ImageFolder dataset of drawn textures: training, evaluation and tests without ImageNet.

Each class is a texture that survives the training crops (8% of the area, any aspect in [3/4, 4/3],
mirroring), drawn with random colours, scale, phase and noise, so a tiny network must learn
something real to beat chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("hstripes", "vstripes", "dots", "checker", "rings", "grid", "blobs", "plain")


def texture(kind: str, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    # A dark and a light colour, either way round: random hues, but the pattern always shows.
    dark, light = (
        tuple(int(c) for c in rng.integers(0, 100, 3)),
        tuple(int(c) for c in rng.integers(156, 256, 3)),
    )
    fg, bg = (dark, light) if rng.random() < 0.5 else (light, dark)
    period = int(rng.integers(12, 36))
    phase = int(rng.integers(0, period))
    image = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(image)
    half = period // 2
    if kind == "hstripes":
        for y in range(-phase, height, period):
            draw.rectangle((0, y, width, y + half), fill=fg)
    elif kind == "vstripes":
        for x in range(-phase, width, period):
            draw.rectangle((x, 0, x + half, height), fill=fg)
    elif kind == "checker":
        for y in range(-phase, height, half):
            for x in range(-phase + ((y + phase) // half % 2) * half, width, period):
                draw.rectangle((x, y, x + half - 1, y + half - 1), fill=fg)
    elif kind == "grid":
        line = max(2, period // 6)
        for y in range(-phase, height, period):
            draw.rectangle((0, y, width, y + line), fill=fg)
        for x in range(-phase, width, period):
            draw.rectangle((x, 0, x + line, height), fill=fg)
    elif kind == "dots":
        r = max(3, period // 4)
        for y in range(-phase, height + period, period):
            for x in range(-phase, width + period, period):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fg)
    elif kind == "rings":
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        for r in range(int(np.hypot(width, height)) + period, 0, -half):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg if (r // half) % 2 else bg)
    elif kind == "blobs":
        for _ in range(int(rng.integers(5, 15))):
            x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 60)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind != "plain":
        raise ValueError(f"unknown texture {kind!r}; known: {CLASSES}")
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))  # sensor noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_dataset(
    root: str | Path,
    *,
    classes: int = 6,
    train_per_class: int = 40,
    val_per_class: int = 10,
    calibration_per_class: int = 0,
    seed: int = 0,
) -> Path:
    """Write `root/{train,val}/<class>/<i>.jpg`, images 200-320 px on a side; returns `root`.

    `calibration_per_class` > 0 adds a third held-out split, `calibration/`, for choosing the
    adaptive stopping thresholds (`calibrate`) on other images than those `evaluate` reports on.
    """
    if not 2 <= classes <= len(CLASSES):
        raise ValueError(f"classes must be in 2..{len(CLASSES)}, got {classes}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    splits = [("train", train_per_class), ("val", val_per_class)]
    if calibration_per_class:  # drawn last: train/ and val/ stay those of the same seed without it
        splits.append(("calibration", calibration_per_class))
    for split, count in splits:
        for kind in CLASSES[:classes]:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                width, height = (int(s) for s in rng.integers(200, 321, 2))
                texture(kind, rng, width, height).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def main(args) -> None:
    root = write_dataset(
        args.output,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        calibration_per_class=args.calibration_per_class,
        seed=args.seed,
    )
    print(
        f"wrote {args.classes} classes ({', '.join(CLASSES[: args.classes])}) to {root}/train and {root}/val"
        + (f" and {root}/calibration" if args.calibration_per_class else "")
    )
