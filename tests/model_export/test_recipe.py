"""Each piece of the paper's recipe (section 6), checked so that a wrong value fails."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_export import recipe
from model_export.model import GoogLeNetConfig, GoogLeNetOutputs, build


def test_lr_is_lowered_4_percent_every_8_epochs() -> None:
    opt = recipe.optimizer(nn.Linear(2, 2), lr=0.01)
    schedule = recipe.lr_schedule(opt)
    lrs = []
    for _ in range(17):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()  # once per epoch
    assert lrs[0] == pytest.approx(0.01) and lrs[7] == pytest.approx(0.01)
    assert lrs[8] == pytest.approx(0.0096) and lrs[15] == pytest.approx(0.0096)
    assert lrs[16] == pytest.approx(0.009216)


def test_sgd_momentum_09_and_no_decay_on_biases() -> None:
    model = build(GoogLeNetConfig(width=0.125, variant="torchvision"))
    opt = recipe.optimizer(model, lr=0.01, weight_decay=2e-4)
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 2e-4 and all(p.ndim > 1 for p in decayed["params"])
    assert free["weight_decay"] == 0 and any(p is model.fc.bias for p in free["params"])


def test_aux_losses_are_weighted_03() -> None:
    torch.manual_seed(0)
    target = torch.tensor([1, 2, 0])
    logits, aux2, aux1 = (torch.randn(3, 5) for _ in range(3))
    total = recipe.loss(GoogLeNetOutputs(logits, aux2, aux1), target)
    main = F.cross_entropy(logits, target)
    aux = F.cross_entropy(aux1, target) + F.cross_entropy(aux2, target)
    assert total.item() == pytest.approx(main.item() + 0.3 * aux.item(), rel=1e-6)
    assert (total - main).item() != pytest.approx(aux.item())  # not an unweighted sum
    assert recipe.loss(logits, target).item() == pytest.approx(main.item())  # eval: main loss only


def _updates(kind: str, values: list[float], **kwargs) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    averaged = recipe.polyak(model, kind=kind, **kwargs)
    for v in values:
        with torch.no_grad():
            model.weight.fill_(v)
        averaged.update_parameters(model)
    return averaged.module


def test_polyak_mean_is_the_average_of_the_iterates() -> None:
    values = [1.0, 2.0, 6.0, -3.0, 10.0]
    assert _updates("mean", values).weight.item() == pytest.approx(sum(values) / len(values))


def test_polyak_ema_matches_a_manual_average() -> None:
    values = [float(v) for v in range(1, 30)]
    expected = values[0]
    for n, v in enumerate(values[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))  # warm-up, then the configured decay
        expected = d * expected + (1 - d) * v
    assert _updates("ema", values, decay=0.9).weight.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        recipe.polyak(nn.Linear(1, 1), kind="median")  # type: ignore[arg-type]
