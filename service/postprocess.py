"""Probabilities -> answer: mean over crops, then over members (paper section 7), then top-k."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    index: int
    wnid: str
    label: str
    probability: float


def average(per_member: Sequence[np.ndarray], images: int) -> np.ndarray:
    """[rows, C] per member, rows = images x crops -> [images, C]: softmax averaging, not max (paper 7)."""
    stacked = np.stack(per_member).astype(np.float64)  # M x (images * k) x C
    members, rows, classes = stacked.shape
    per_image = stacked.reshape(members, images, rows // images, classes)  # M x images x k x C
    return per_image.mean(axis=2).mean(axis=0)  # images x C


def top_k(probabilities: np.ndarray, k: int, labels: Sequence[tuple[str, str]]) -> list[Prediction]:
    """The k most probable classes of one image, highest first; `labels` = (wnid, name) by index."""
    k = min(k, len(probabilities))
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return [Prediction(int(i), labels[i][0], labels[i][1], float(probabilities[i])) for i in best]
