"""The paper's training recipe (section 6), one piece each: optimizer, LR schedule, losses, Polyak averaging.

Where the paper is silent (base LR, batch size, weight decay) the BVLC reproduction's values are the
defaults (docs/googlenet.md 3).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import StepLR
from torch.optim.swa_utils import AveragedModel

from model_export.model import GoogLeNetOutputs

MOMENTUM = 0.9  # paper section 6
LR_GAMMA, LR_STEP_EPOCHS = 0.96, 8  # "decreasing the learning rate by 4% every 8 epochs" (section 6)
AUX_WEIGHT = 0.3  # "the losses of the auxiliary classifiers were weighted by 0.3" (section 5)
Averaging = Literal["ema", "mean"]


def optimizer(model: nn.Module, *, lr: float, weight_decay: float = 2e-4) -> torch.optim.SGD:
    """SGD with momentum 0.9; weight decay on conv/linear weights only, as BVLC's decay_mult 0 on biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # biases, BatchNorm scales and shifts
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM)


def lr_schedule(opt: torch.optim.Optimizer, *, step_epochs: int = LR_STEP_EPOCHS) -> StepLR:
    """x0.96 every `step_epochs` epochs; call `.step()` once per epoch."""
    return StepLR(opt, step_size=step_epochs, gamma=LR_GAMMA)


def loss(outputs: Tensor | GoogLeNetOutputs, target: Tensor) -> Tensor:
    """Main loss + 0.3 x each auxiliary loss in training; the main loss alone otherwise (docs/googlenet.md 2)."""
    if isinstance(outputs, GoogLeNetOutputs):
        aux = F.cross_entropy(outputs.aux_logits1, target) + F.cross_entropy(outputs.aux_logits2, target)
        return F.cross_entropy(outputs.logits, target) + AUX_WEIGHT * aux
    return F.cross_entropy(outputs, target)


def polyak(model: nn.Module, *, kind: Averaging = "ema", decay: float = 0.999) -> AveragedModel:
    """The averaged weights that get exported (paper section 6: "Polyak averaging ... at inference").

    "mean" is Polyak and Juditsky's running mean of every iterate; "ema" an exponential moving
    average whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates (TensorFlow's
    ExponentialMovingAverage with num_updates), so short runs are not dominated by the random init.
    BatchNorm statistics are averaged like the weights (use_buffers).
    """
    if kind == "mean":
        return AveragedModel(model, use_buffers=True)  # default avg_fn: arithmetic mean of iterates

    def ema(averaged: Tensor, current: Tensor, n: Tensor) -> Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)

    if kind != "ema":
        raise ValueError(f"averaging must be 'ema' or 'mean', got {kind!r}")
    return AveragedModel(model, use_buffers=True, avg_fn=ema)
