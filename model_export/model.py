"""GoogLeNet (Szegedy et al. 2014, Table 1) in two variants: the paper / BVLC reference and torchvision's.

`paper` follows docs/googlenet.md 2 (LRN, true 5x5 branches, biases, Caffe xavier init);
`torchvision` has exactly the state_dict keys and shapes of torchvision's googlenet (docs/googlenet.md 5), so
its weights file loads with `load_state_dict`. `width` scales every channel count (the wider member
of the paper's 7-model ensemble, section 7; tiny nets in tests).
"""

from __future__ import annotations

import functools
import math
from collections import namedtuple
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Variant = Literal["paper", "torchvision"]
VARIANTS: tuple[Variant, ...] = ("paper", "torchvision")

# Same field order as torchvision's GoogLeNetOutputs (docs/googlenet.md 6), so training code serves both.
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])


@dataclass(frozen=True)
class GoogLeNetConfig:
    variant: Variant = "paper"
    width: float = 1.0  # channel multiplier; 1.0 is Table 1
    num_classes: int = 1000
    aux_logits: bool = True  # build the two training-only heads on 4a and 4d (paper section 5)
    transform_input: bool | None = None  # None: True for torchvision (its weights expect 2p-1, docs/googlenet.md 5)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")

    @property
    def uses_transform_input(self) -> bool:
        return self.variant == "torchvision" if self.transform_input is None else self.transform_input

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GoogLeNet(nn.Module):
    def __init__(self, config: GoogLeNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = config = config or GoogLeNetConfig(**kwargs)
        paper = config.variant == "paper"
        w = _widen(config.width)
        conv = BasicConv2d if not paper else BiasConv2d
        # The paper/Caffe sizes hold only with ceil rounding: 112 -> 56 -> 28 -> 14 -> 7 (docs/googlenet.md 2).
        pool = functools.partial(nn.MaxPool2d, stride=2, ceil_mode=True)

        # Table 1, one line per row: type, patch/stride, output size (depth)
        self.conv1 = conv(3, w(64), kernel_size=7, stride=2, padding=3)  # conv 7x7/2, 112x112x64
        self.maxpool1 = pool(3)  # max pool 3x3/2, 56x56x64
        self.lrn1 = LocalResponseNorm() if paper else nn.Identity()  # after pool1 (docs/googlenet.md 2)
        self.conv2 = conv(w(64), w(64), kernel_size=1)  # the "#3x3 reduce 64" of row 3
        self.conv3 = conv(w(64), w(192), kernel_size=3, padding=1)  # conv 3x3/1, 56x56x192
        self.lrn2 = LocalResponseNorm() if paper else nn.Identity()  # before pool2 (docs/googlenet.md 2)
        self.maxpool2 = pool(3)  # max pool 3x3/2, 28x28x192

        channels = w(192)

        def block(*ch: int) -> Inception:
            # Each block takes what the previous one produced: with width != 1 the rounded branch
            # widths need not add up to the rounded Table 1 figure.
            nonlocal channels
            module = Inception(channels, *map(w, ch), conv=conv, five=5 if paper else 3)
            channels = module.out_channels
            return module

        # block(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): the Table 1 columns
        self.inception3a = block(64, 96, 128, 16, 32, 32)  # 28x28x256
        self.inception3b = block(128, 128, 192, 32, 96, 64)  # 28x28x480
        self.maxpool3 = pool(3)  # 14x14x480
        self.inception4a = block(192, 96, 208, 16, 48, 64)  # 14x14x512
        self.inception4b = block(160, 112, 224, 24, 64, 64)  # 14x14x512
        self.inception4c = block(128, 128, 256, 24, 64, 64)  # 14x14x512
        self.inception4d = block(112, 144, 288, 32, 64, 64)  # 14x14x528
        self.inception4e = block(256, 160, 320, 32, 128, 128)  # 14x14x832
        # torchvision's pool4 is 2x2/2 (docs/googlenet.md 5); 14 -> 7 either way.
        self.maxpool4 = pool(3 if paper else 2)  # 7x7x832
        self.inception5a = block(256, 160, 320, 32, 128, 128)  # 7x7x832
        self.inception5b = block(384, 192, 384, 48, 128, 128)  # 7x7x1024

        if config.aux_logits:  # on 4a and 4d (paper section 5, docs/googlenet.md 2)
            self.aux1 = InceptionAux(
                self.inception4a.out_channels, config.num_classes, conv=conv, paper=paper, width=config.width
            )
            self.aux2 = InceptionAux(
                self.inception4d.out_channels, config.num_classes, conv=conv, paper=paper, width=config.width
            )
        else:
            self.aux1 = self.aux2 = None

        # The paper pools 7x7/1 (so only 224 inputs work, docs/googlenet.md 5); torchvision pools adaptively.
        self.avgpool = nn.AvgPool2d(7, stride=1) if paper else nn.AdaptiveAvgPool2d((1, 1))  # 1x1x1024
        self.dropout = nn.Dropout(0.4 if paper else 0.2)  # docs/googlenet.md 2 and 5
        self.fc = nn.Linear(self.inception5b.out_channels, config.num_classes)  # linear, 1x1x1000
        _init_caffe(self) if paper else _init_torchvision(self)

    def _transform_input(self, x: Tensor) -> Tensor:
        # ImageNet-normalised RGB -> 2p-1, the range torchvision's (TF-ported) weights expect (docs/googlenet.md 5).
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        if self.config.uses_transform_input:
            x = self._transform_input(x)
        # N x 3 x 224 x 224
        x = self.conv1(x)
        # N x 64 x 112 x 112
        x = self.lrn1(self.maxpool1(x))
        # N x 64 x 56 x 56
        x = self.conv2(x)
        # N x 64 x 56 x 56
        x = self.lrn2(self.conv3(x))
        # N x 192 x 56 x 56
        x = self.maxpool2(x)
        # N x 192 x 28 x 28
        x = self.inception3a(x)
        # N x 256 x 28 x 28
        x = self.inception3b(x)
        # N x 480 x 28 x 28
        x = self.maxpool3(x)
        # N x 480 x 14 x 14
        x = self.inception4a(x)
        # N x 512 x 14 x 14
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4b(x)
        # N x 512 x 14 x 14
        x = self.inception4c(x)
        # N x 512 x 14 x 14
        x = self.inception4d(x)
        # N x 528 x 14 x 14
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception4e(x)
        # N x 832 x 14 x 14
        x = self.maxpool4(x)
        # N x 832 x 7 x 7
        x = self.inception5a(x)
        # N x 832 x 7 x 7
        x = self.inception5b(x)
        # N x 1024 x 7 x 7
        x = torch.flatten(self.avgpool(x), 1)
        # N x 1024
        x = self.fc(self.dropout(x))
        # N x 1000
        if aux1 is not None and aux2 is not None:  # training only: aux heads never reach an export
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


class Inception(nn.Module):
    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv: type[nn.Module],
        five: int = 5,
    ) -> None:
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1), conv(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        # five=3 reproduces torchvision's known 3x3-for-5x5 deviation (vision#906, docs/googlenet.md 5).
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1),
            conv(ch5x5red, ch5x5, kernel_size=five, padding=five // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        # Channel order 1x1, 3x3, 5x5, pool proj, as Caffe's Concat and torchvision (docs/googlenet.md 1).
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Training-only classifier (docs/googlenet.md 2): avgpool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7, linear."""

    def __init__(
        self, in_channels: int, num_classes: int, *, conv: type[nn.Module], paper: bool, width: float
    ):
        super().__init__()
        w = _widen(width)
        self.paper = paper
        self.conv = conv(in_channels, w(128), kernel_size=1)
        self.fc1 = nn.Linear(w(128) * 4 * 4, w(1024))
        self.fc2 = nn.Linear(w(1024), num_classes)
        self.dropout = nn.Dropout(p=0.7)

    def forward(self, x: Tensor) -> Tensor:
        # N x 512 x 14 x 14 (4a) or N x 528 x 14 x 14 (4d); torchvision pools adaptively (docs/googlenet.md 5)
        x = F.avg_pool2d(x, 5, stride=3) if self.paper else F.adaptive_avg_pool2d(x, (4, 4))
        # N x C x 4 x 4
        x = torch.flatten(self.conv(x), 1)
        # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        # N x 1024
        return self.fc2(x)


class BiasConv2d(nn.Module):
    """The paper's conv: convolution with bias, then ReLU (docs/googlenet.md 2). Named `conv` like torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=True, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x), inplace=True)


class BasicConv2d(nn.Module):
    """torchvision's conv: no bias, BatchNorm(eps 1e-3), ReLU (docs/googlenet.md 5)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class LocalResponseNorm(nn.Module):
    """Caffe's across-channel LRN, y = x / (k + alpha/n * sum_window x^2)^0.75 (docs/googlenet.md 2).

    Same arithmetic as `nn.LocalResponseNorm`, except t^0.75 is computed as sqrt(t) * sqrt(sqrt(t)):
    equal to 6e-7 and the fastest form once exported to ONNX Runtime on CPU (docs/architecture.md 6).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.k = size, alpha, k

    def forward(self, x: Tensor) -> Tensor:
        squares = (x * x).unsqueeze(1)  # N x 1 x C x H x W: pool the channel axis as depth
        squares = F.pad(squares, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))  # zero-padded window
        mean = F.avg_pool3d(squares, (self.size, 1, 1), stride=1).squeeze(1)  # (1/n) * window sum
        root = torch.sqrt(self.k + self.alpha * mean)
        return x / (root * torch.sqrt(root))  # t^0.75 = t^0.5 * t^0.25


def _widen(width: float):
    return lambda channels: max(1, round(channels * width))


def _init_caffe(model: nn.Module) -> None:
    # BVLC train_val.prototxt (docs/googlenet.md 2): xavier = U(+-sqrt(3 / fan_in)), not torch's xavier_uniform_;
    # biases 0.2, except 0 on the three 1000-way classifiers.
    classifiers = {m for name, m in model.named_modules() if name in ("fc", "aux1.fc2", "aux2.fc2")}
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(3.0 / m.weight[0].numel())
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.constant_(m.bias, 0.0 if m in classifiers else 0.2)


def _init_torchvision(model: nn.Module) -> None:
    # torchvision's own init (docs/googlenet.md 5: bounds +-2 are absolute, so effectively untruncated).
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def build(config: GoogLeNetConfig | dict[str, Any] | None = None, *, seed: int | None = None) -> GoogLeNet:
    """A fresh model; with `seed`, its initial weights depend on the seed only."""
    if isinstance(config, dict):
        config = GoogLeNetConfig(**config)
    if seed is None:
        return GoogLeNet(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GoogLeNet(config)


def load_torchvision_weights(path: str, *, aux_logits: bool = False) -> GoogLeNet:
    """torchvision's googlenet weights file (e.g. googlenet-1378be20.pth), from a local path only."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = GoogLeNet(GoogLeNetConfig(variant="torchvision", aux_logits=True))
    model.load_state_dict(state, strict=True)  # the file holds the (untrained) aux heads too (docs/googlenet.md 5)
    if not aux_logits:
        model.aux1 = model.aux2 = None
        model.config = replace(model.config, aux_logits=False)
    return model


def count_parameters(model: nn.Module, *, aux: bool = False) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if aux or not name.startswith("aux"))
