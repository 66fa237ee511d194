"""The model contract between model_export and the service (docs/architecture.md 3.1-3.2; docs/model-repository.md).

One owner for what both sides must agree on: the ONNX I/O names, shapes and types, the 1000
ILSVRC-2012 classes with their wnids, the labels.tsv format and the file hash. model_export
imports it to write files, the service to read and check them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
IMAGE_SIDE, CHANNELS = 224, 3  # uint8 RGB, NHWC: the graph normalises (docs/architecture.md 3.2)
ITEM_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, CHANNELS)  # one input row after the batch dimension
CLASSES = 1000  # ILSVRC-2012 (paper section 5); the output is float32 [N, CLASSES] softmax


class ContractError(ValueError):
    """A file breaks the contract: labels.tsv malformed, a hash that does not match."""


@dataclass(frozen=True)
class Label:
    index: int
    wnid: str  # the WordNet id, e.g. n01440764
    name: str


def parse_labels(text: str, *, source: str = "labels.tsv") -> list[Label]:
    """labels.tsv: CLASSES lines of `index<TAB>wnid<TAB>name`, indexes 0.. in order."""
    labels = []
    for i, line in enumerate(text.splitlines()):
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] != str(i):
            raise ContractError(f"{source} line {i + 1} must be '{i}<TAB>wnid<TAB>name', got {line[:80]!r}")
        labels.append(Label(i, parts[1], parts[2]))
    if len(labels) != CLASSES:
        raise ContractError(f"{source} has {len(labels)} rows, expected {CLASSES}")
    return labels


def format_labels(labels: list[Label]) -> str:
    return "".join(f"{label.index}\t{label.wnid}\t{label.name}\n" for label in labels)


def imagenet_labels() -> list[Label]:
    """The ILSVRC-2012 classes in index order (sorted wnids), with torchvision's class names."""
    text = resources.files("service").joinpath("data/imagenet_classes.tsv").read_text(encoding="utf-8")
    return parse_labels(text, source="imagenet_classes.tsv")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
