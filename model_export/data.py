"""Training and validation transforms (the paper's section 6 sampling) and ImageFolder datasets.

Validation uses the service's 1-crop geometry (`service.preprocess`), so the numbers a training
run prints are measured on the same pixels the service and `evaluate` see.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import datasets, transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from service.preprocess import crops_from_image

# One mean/std for both variants, in [0, 1] units; the exported graph applies them (docs/architecture.md 2).
# The paper only says "mean subtraction" (section 5); torchvision's weights need exactly these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper section 6: "bilinear, area, nearest neighbor and cubic, with equal probability".
# PIL's BOX filter is the "area" resampling.
INTERPOLATIONS = (
    InterpolationMode.BILINEAR,
    InterpolationMode.BOX,
    InterpolationMode.NEAREST,
    InterpolationMode.BICUBIC,
)

# AlexNet's PCA lighting noise (Krizhevsky et al. 2012, 4.1): eigen-decomposition of the RGB
# covariance of ImageNet pixels in [0, 1], as published with fb.resnet.torch's transforms.lua.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class RandomInterpolationResizedCrop(transforms.RandomResizedCrop):
    """RandomResizedCrop that draws the resampling filter per image from `interpolations`."""

    def __init__(self, size: int, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolations=INTERPOLATIONS):
        super().__init__(size, scale=scale, ratio=ratio)
        self.interpolations = interpolations

    def forward(self, img: Image.Image) -> Image.Image:
        top, left, height, width = self.get_params(img, self.scale, self.ratio)
        mode = self.interpolations[int(torch.randint(len(self.interpolations), ()))]
        return F.resized_crop(img, top, left, height, width, self.size, mode)


class Lighting(nn.Module):
    """Add sum_i alpha_i * lambda_i * p_i with alpha_i ~ N(0, std) to every pixel (AlexNet 4.1)."""

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", torch.tensor(PCA_EIGVAL))
        self.register_buffer("eigvec", torch.tensor(PCA_EIGVEC))

    def forward(self, img: Tensor) -> Tensor:  # 3 x H x W in [0, 1]
        if self.std == 0:
            return img
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)
        return img + rgb.view(3, 1, 1)


def train_transform(size: int = 224, *, lighting_std: float = 0.1) -> transforms.Compose:
    """The paper's post-competition sampling (section 6; docs/googlenet.md 3)."""
    return transforms.Compose(
        [
            # Area uniform in 8%..100% of the image, aspect ratio in [3/4, 4/3], random filter.
            RandomInterpolationResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            transforms.RandomHorizontalFlip(),
            # Howard's distortions: brightness, contrast and saturation factors in [0.5, 1.5], applied in
            # a random order; torchvision's ColorJitter draws a fresh order per image (PIL ImageEnhance).
            transforms.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5),
            transforms.PILToTensor(),
            transforms.ConvertImageDtype(torch.float32),
            Lighting(lighting_std),  # then AlexNet's lighting noise (Howard section 2)
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ServiceCrop:
    """PIL image -> normalised 3 x 224 x 224 tensor through the service's 1-crop geometry."""

    def __call__(self, img: Image.Image) -> Tensor:
        crop = torch.from_numpy(crops_from_image(img.convert("RGB"), 1)[0])  # 224 x 224 x 3 uint8
        return normalize(crop.permute(2, 0, 1).unsqueeze(0))[0]


def normalize(images: Tensor) -> Tensor:
    """uint8 N x 3 x H x W -> (x / 255 - mean) / std, exactly what the exported graph computes."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def image_folder(root: str | Path, split: str, *, train: bool) -> datasets.ImageFolder:
    """`root/split/<class>/*.jpg`; class index = position of the sorted class name (docs/googlenet.md 5)."""
    path = Path(root) / split
    if not path.is_dir():
        raise FileNotFoundError(f"no {split}/ folder in {root} (expected an ImageFolder tree: train/, val/)")
    return datasets.ImageFolder(str(path), transform=train_transform() if train else ServiceCrop())
