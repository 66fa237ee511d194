"""loadtest/images.py: the image corpus of a load test, from a folder or generated."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from loadtest.images import DEFAULT_FOLDER, SUFFIXES, Corpus, generate_jpegs, load_corpus
from tests.conftest import make_image


def test_a_corpus_needs_an_image() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        Corpus([], "generated")


def test_mean_bytes() -> None:
    assert Corpus([b"ab", b"abcd"], "x").mean_bytes == 3.0


def test_generated_jpegs_are_imagenet_sized_and_differ() -> None:
    images = generate_jpegs(3)
    assert len(images) == 3 and len(set(images)) == 3
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.size == (500, 375) and image.mode == "RGB"


def test_generated_jpegs_depend_on_the_seed_only() -> None:
    assert generate_jpegs(2, width=40, height=30, seed=4) == generate_jpegs(2, width=40, height=30, seed=4)
    assert generate_jpegs(1, width=40, height=30, seed=4) != generate_jpegs(1, width=40, height=30, seed=5)
    with Image.open(io.BytesIO(generate_jpegs(1, width=40, height=30)[0])) as image:
        assert image.size == (40, 30)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, fmt in (("b.JPEG", "JPEG"), ("a.jpg", "JPEG"), ("c.png", "PNG"), ("d.webp", "WEBP")):
        (tmp_path / name).write_bytes(make_image(32, 24, fmt=fmt, seed=ord(name[0])))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "e.gif").write_bytes(b"GIF89a")
    return tmp_path


def test_a_folder_gives_its_images_in_name_order(folder: Path) -> None:
    corpus = load_corpus(folder)
    names = ["a.jpg", "b.JPEG", "c.png", "d.webp"]
    assert corpus.images == [(folder / n).read_bytes() for n in names]
    assert corpus.source == str(folder)


def test_a_limit_takes_the_first_images(folder: Path) -> None:
    assert load_corpus(folder, limit=2).images == [(folder / n).read_bytes() for n in ("a.jpg", "b.JPEG")]


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no image folder at"):
        load_corpus(tmp_path / "nowhere")


def test_a_named_folder_without_images_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="holds no .jpeg/.jpg/.png/.webp images"):
        load_corpus(tmp_path)


def test_the_default_is_the_shared_samples_or_generated_images() -> None:
    corpus = load_corpus(limit=3, generated=5)
    assert len(corpus.images) == 3
    shared = DEFAULT_FOLDER.is_dir() and any(p.suffix.lower() in SUFFIXES for p in DEFAULT_FOLDER.iterdir())
    assert corpus.source == (str(DEFAULT_FOLDER) if shared else "generated")
