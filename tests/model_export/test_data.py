"""The training sampler of the paper's section 6: crop area and aspect, filters, photometric noise."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from PIL import Image

from model_export import data
from model_export.data import (
    INTERPOLATIONS,
    Lighting,
    RandomInterpolationResizedCrop,
    ServiceCrop,
    normalize,
    train_transform,
)
from service.preprocess import crops_from_image


def test_crop_area_is_8_to_100_percent_and_aspect_3_4_to_4_3() -> None:
    sampler = RandomInterpolationResizedCrop(224)
    image = Image.new("RGB", (1000, 1000))
    torch.manual_seed(0)
    areas, log_aspects = [], []
    for _ in range(4000):
        _top, _left, h, w = sampler.get_params(image, sampler.scale, sampler.ratio)
        areas.append(h * w / 1e6)
        log_aspects.append(math.log(w / h))
    areas, log_aspects = np.array(areas), np.array(log_aspects)
    assert areas.min() >= 0.08 - 0.002 and areas.max() <= 1.0
    assert abs(log_aspects).max() <= math.log(4 / 3) + 0.003  # integer rounding of the box
    # Area is drawn uniformly: large areas with a skewed aspect do not fit a square and are redrawn,
    # so the accepted areas lean small, but the whole range is used.
    assert 0.35 < areas.mean() < 0.55 and (areas < 0.2).mean() > 0.1 and (areas > 0.8).mean() > 0.05
    # log(aspect) is uniform on [-log(4/3), log(4/3)]: mean 0, sd log(4/3) / sqrt(3).
    assert abs(log_aspects.mean()) < 0.01
    assert abs(log_aspects.std() - math.log(4 / 3) / math.sqrt(3)) < 0.01


def test_each_interpolation_is_drawn_about_equally(monkeypatch) -> None:
    used = Counter()
    real = data.F.resized_crop

    def spy(img, top, left, height, width, size, interpolation):
        used[interpolation] += 1
        return real(img, top, left, height, width, size, interpolation)

    monkeypatch.setattr(data.F, "resized_crop", spy)
    sampler = RandomInterpolationResizedCrop(32)
    torch.manual_seed(0)
    for _ in range(800):
        sampler(Image.new("RGB", (64, 48)))
    assert set(used) == set(INTERPOLATIONS)  # bilinear, area (box), nearest, bicubic
    assert all(150 < n < 250 for n in used.values())


def test_howard_distortions_and_lighting_are_in_the_pipeline() -> None:
    steps = {type(t).__name__: t for t in train_transform().transforms}
    jitter = steps["ColorJitter"]
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.5, 1.5) and jitter.hue is None
    assert steps["Lighting"].std == 0.1 and "RandomHorizontalFlip" in steps


def test_lighting_noise_follows_the_pca_covariance() -> None:
    torch.manual_seed(0)
    lighting = Lighting(0.1)
    shifts = torch.stack([lighting(torch.zeros(3, 1, 1)).flatten() for _ in range(20000)])
    eigvec, eigval = torch.tensor(data.PCA_EIGVEC), torch.tensor(data.PCA_EIGVAL)
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T
    torch.testing.assert_close(torch.cov(shifts.T), expected, atol=2e-5, rtol=0.05)
    assert torch.equal(Lighting(0.0)(torch.ones(3, 2, 2)), torch.ones(3, 2, 2))


def test_validation_uses_the_service_crop_and_the_graph_normalisation() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    crop = torch.from_numpy(crops_from_image(image, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(ServiceCrop()(image), normalize(crop)[0])
    mean, std = torch.tensor(data.IMAGENET_MEAN), torch.tensor(data.IMAGENET_STD)
    torch.testing.assert_close(normalize(crop)[0, :, 0, 0], (crop[0, :, 0, 0] / 255 - mean) / std)
