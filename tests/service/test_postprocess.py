"""Softmax averaging over crops then members (paper section 7), and top-k."""

from __future__ import annotations

import numpy as np

from service.postprocess import average, top_k


def test_average_over_crops_then_members_per_image() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((2 * 10, 5)), rng.random((2 * 10, 5))  # 2 images x 10 crops, 2 members
    out = average([a, b], images=2)
    expected_first = (a[:10].mean(0) + b[:10].mean(0)) / 2
    assert out.shape == (2, 5) and np.allclose(out[0], expected_first)
    assert np.allclose(out[1], (a[10:].mean(0) + b[10:].mean(0)) / 2)


def test_top_k_is_sorted_and_labelled() -> None:
    probs = np.array([0.1, 0.5, 0.05, 0.3, 0.05])
    labels = [(f"n{i}", f"class {i}") for i in range(5)]
    best = top_k(probs, 3, labels)
    assert [p.index for p in best] == [1, 3, 0]
    assert best[0].label == "class 1" and best[0].wnid == "n1" and best[0].probability == 0.5
    assert len(top_k(probs, 99, labels)) == 5
