"""Fixtures of the model_export tests: the sample photos, a generated dataset, short training runs."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export import train
from model_export.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "data" / "imagenet-samples"
# The short run: the BatchNorm variant learns these textures within ~70 steps (~20 s here); the paper
# variant, without BatchNorm, needs hundreds (docs/training.md).
RUN = {
    "variant": "torchvision",
    "width": 0.125,
    "num_classes": 4,
    "batch_size": 16,
    "lr": 0.01,
    "lr_step_epochs": 4,
    "workers": 0,
}
EPOCHS = 12


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Torch's intra-op threads spin-wait for each other: with another job on one of the 2 cores the
    # short training run took 5x longer (62 s -> 310 s) than on one thread, past the test timeout.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _flush_denormals():
    # As train and evaluate do on CPU: narrow random nets produce denormals, which slow CPU kernels ~10x.
    # Per test, and reset after it (train/evaluate set it too): flush-to-zero left on in the process
    # breaks hypothesis's float strategies in later tests.
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def sample_paths() -> list[Path]:
    """The ImageNet photos beside the project (never committed), or a clean skip without them."""
    files = sorted(SAMPLES.glob("*.JPEG")) if SAMPLES.is_dir() else []
    if not files:
        pytest.skip("../shared/data/imagenet-samples is not present")
    return files


@pytest.fixture(scope="session")
def sample_images() -> np.ndarray:
    from model_export.export import parity_images

    sample_paths()
    images, source = parity_images(100, SAMPLES)
    assert "photos" in source
    return images


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 texture classes: 24 training and 12 held-out images each."""
    return write_dataset(tmp_path_factory.mktemp("shapes"), classes=4, train_per_class=24, val_per_class=12)


def train_args(data: Path, out_dir: Path, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(
        ["--data", str(data), "--out-dir", str(out_dir), "--device", "cpu", "--no-progress"]
    )
    for key, value in {**RUN, "epochs": EPOCHS, **overrides}.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="session")
def trained_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted short run; its out_dir holds checkpoint.pt, metrics.jsonl, metrics.png."""
    out = tmp_path_factory.mktemp("run")
    train.main(train_args(shapes, out))
    return out


@pytest.fixture(scope="session")
def resumed_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run stopped after 2 epochs, then resumed for a 3rd (epoch e depends on (seed, e) only)."""
    out = tmp_path_factory.mktemp("resumed")
    train.main(train_args(shapes, out, epochs=2))
    shutil.copy(out / "checkpoint.pt", out / "epoch2.pt")
    train.main(train_args(shapes, out, epochs=3, resume=True))
    return out


def _build_cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "model_export", "build-repository", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # one torch thread, as in-process (_one_torch_thread)
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def build_cli():
    """Run `python -m model_export build-repository ARGS`; returns the completed process."""
    return _build_cli


@pytest.fixture(scope="session")
def default_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`build-repository` with no weights: 7 seeded random-init members, fp32 + fp16."""
    out = tmp_path_factory.mktemp("built") / "model_repository"
    # How long the build takes is a benchmark figure (docs/benchmarks.md), never measured here.
    return out, _build_cli("--output", str(out)).stdout


@pytest.fixture(scope="session")
def tiny_calibration(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A repository of 3 tiny ONNX members and a 2-class dataset with val/ and calibration/ splits."""
    from tests.tiny_models import write_repository

    root = tmp_path_factory.mktemp("calibration")
    repo = write_repository(root / "repo", members=3)
    return repo, write_dataset(root / "data", classes=2, train_per_class=0, val_per_class=2, calibration_per_class=2)
