"""model_export/synthetic.py: drawn texture classes and the ImageFolder dataset written from them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_export.synthetic import CLASSES, main, texture, write_dataset


def _pixels(kind: str, seed: int = 0, size: tuple[int, int] = (240, 200)) -> np.ndarray:
    return np.asarray(texture(kind, np.random.default_rng(seed), *size), dtype=np.float32)


@pytest.mark.parametrize("kind", CLASSES)
def test_every_texture_is_an_rgb_image_of_the_asked_size(kind: str) -> None:
    image = texture(kind, np.random.default_rng(0), 240, 200)
    assert image.mode == "RGB" and image.size == (240, 200)


@pytest.mark.parametrize("kind", CLASSES)
def test_a_texture_depends_on_the_generator_only(kind: str) -> None:
    np.testing.assert_array_equal(_pixels(kind, seed=3), _pixels(kind, seed=3))
    assert not np.array_equal(_pixels(kind, seed=3), _pixels(kind, seed=4))


def test_stripes_run_their_way() -> None:
    # Horizontal stripes: rows differ, columns alike; vertical ones the other way round.
    h, v = _pixels("hstripes").mean(axis=2), _pixels("vstripes").mean(axis=2)
    assert h.mean(axis=1).std() > 5 * h.mean(axis=0).std()
    assert v.mean(axis=0).std() > 5 * v.mean(axis=1).std()


@pytest.mark.parametrize("kind", [k for k in CLASSES if k != "plain"])
def test_patterns_show_above_the_noise(kind: str) -> None:
    # Plain is one colour plus noise (sigma 12); every pattern mixes a dark and a light colour.
    plain = _pixels("plain").mean(axis=2).std()
    assert _pixels(kind).mean(axis=2).std() > 2 * plain


def test_an_unknown_texture_is_named() -> None:
    with pytest.raises(ValueError, match="unknown texture 'zigzag'; known: "):
        texture("zigzag", np.random.default_rng(0), 64, 64)


def test_write_dataset_writes_an_image_folder(tmp_path: Path) -> None:
    root = write_dataset(str(tmp_path / "data"), classes=3, train_per_class=2, val_per_class=1, seed=5)
    assert root == tmp_path / "data"
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))
    expected = [f"{split}/{kind}/{i:04d}.jpg" for split, n in (("train", 2), ("val", 1))
                for kind in CLASSES[:3] for i in range(n)]
    assert found == sorted(expected)
    for path in root.rglob("*.jpg"):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(200 <= side <= 320 for side in image.size)


def test_the_dataset_depends_on_the_seed_only(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", classes=2, train_per_class=1, val_per_class=1, seed=9)
    again = write_dataset(tmp_path / "b", classes=2, train_per_class=1, val_per_class=1, seed=9)
    other = write_dataset(tmp_path / "c", classes=2, train_per_class=1, val_per_class=1, seed=10)
    name = "train/hstripes/0000.jpg"
    assert (first / name).read_bytes() == (again / name).read_bytes() != (other / name).read_bytes()


@pytest.mark.parametrize("classes", [1, len(CLASSES) + 1])
def test_the_class_count_is_checked(tmp_path: Path, classes: int) -> None:
    with pytest.raises(ValueError, match=f"classes must be in 2..{len(CLASSES)}, got {classes}"):
        write_dataset(tmp_path, classes=classes)
    assert not any(tmp_path.iterdir())


def test_main_writes_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        output=tmp_path / "out", classes=2, train_per_class=1, val_per_class=1, calibration_per_class=0, seed=0
    )
    main(args)
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 4
    out = capsys.readouterr().out
    assert out.startswith("wrote 2 classes (hstripes, vstripes) to ") and out.rstrip().endswith("/val")
