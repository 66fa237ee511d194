"""The image corpus a load test sends: real JPEGs from a folder, or generated ones where none exist."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Beside the repository, as the tests find it (tests/conftest.py): <repo root>/../shared/data.
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet-samples"
SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")


@dataclass(frozen=True)
class Corpus:
    images: list[bytes]
    source: str  # the folder, or "generated"

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("an image corpus needs at least one image")

    @property
    def mean_bytes(self) -> float:
        return sum(map(len, self.images)) / len(self.images)


def generate_jpegs(count: int, *, width: int = 500, height: int = 375, seed: int = 0) -> list[bytes]:
    """Smooth gradients plus noise, about the size of an ImageNet validation image (~500x375)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for _ in range(count):
        phase = rng.uniform(0, 255, 3)
        base = np.stack([x * 255 / width + phase[0], y * 255 / height + phase[1], (x + y) / 3 + phase[2]], -1) % 256
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def load_corpus(folder: Path | None = None, *, limit: int | None = None, generated: int = 32) -> Corpus:
    """Images of `folder` (default: ../shared/data/imagenet-samples); generated JPEGs if it has none."""
    chosen = folder or DEFAULT_FOLDER
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {folder}")
    files = sorted(p for p in chosen.iterdir() if p.suffix.lower() in SUFFIXES) if chosen.is_dir() else []
    if not files:
        if folder is not None:
            raise FileNotFoundError(f"{folder} holds no .jpeg/.jpg/.png/.webp images")
        return Corpus(generate_jpegs(generated if limit is None else min(limit, generated)), "generated")
    return Corpus([p.read_bytes() for p in files[:limit]], str(chosen))
