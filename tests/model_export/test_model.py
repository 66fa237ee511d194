"""The network against Table 1, the BVLC reference and torchvision's own code."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from model_export.model import (
    GoogLeNet,
    GoogLeNetConfig,
    GoogLeNetOutputs,
    LocalResponseNorm,
    build,
    count_parameters,
    load_torchvision_weights,
)

STAGES = {"maxpool1": 56, "maxpool2": 28, "maxpool3": 14, "maxpool4": 7, "conv1": 112}


def stage_shapes(model: GoogLeNet) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n in (*STAGES, "inception3b", "inception4e", "inception5b", "avgpool")
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_stages_are_112_56_28_14_7_and_end_in_1024_features(variant: str) -> None:
    shapes = stage_shapes(build(GoogLeNetConfig(variant=variant, aux_logits=False)))
    for name, side in STAGES.items():
        assert shapes[name][2:] == (side, side), name
    assert shapes["inception3b"][1] == 480 and shapes["inception4e"][1] == 832
    assert shapes["inception5b"] == (1, 1024, 7, 7)
    assert shapes["avgpool"] == (1, 1024, 1, 1)


def test_parameter_counts_are_exact() -> None:
    paper = build(GoogLeNetConfig(variant="paper"))
    assert count_parameters(paper) == 6_998_552  # docs/googlenet.md 1: weights + biases, main path
    assert count_parameters(paper.aux1) == 3_188_840 and count_parameters(paper.aux2) == 3_190_888
    tv = build(GoogLeNetConfig(variant="torchvision"))
    assert count_parameters(tv) == 6_624_904  # torchvision's num_params (docs/googlenet.md 5)
    assert count_parameters(tv) == count_parameters(
        torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    )


def test_paper_variant_has_true_5x5_lrn_and_3x3_pool4() -> None:
    model = build(GoogLeNetConfig(variant="paper"))
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert isinstance(model.lrn1, LocalResponseNorm) and isinstance(model.lrn2, LocalResponseNorm)
    assert model.maxpool4.kernel_size == 3 and model.maxpool4.ceil_mode
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7
    tv = build(GoogLeNetConfig(variant="torchvision"))
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)  # vision#906, kept for its weights


def test_aux_heads_only_in_training() -> None:
    model = build(GoogLeNetConfig(width=0.125), seed=0)
    x = torch.randn(2, 3, 224, 224)
    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs) and all(t.shape == (2, 1000) for t in out)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    no_aux = build(GoogLeNetConfig(width=0.125, aux_logits=False))
    assert no_aux.aux1 is None and isinstance(no_aux.train()(x), torch.Tensor)


def test_caffe_init_xavier_and_biases() -> None:
    model = build(GoogLeNetConfig(), seed=0)
    conv = model.inception4a.branch2[1].conv  # 3x3 over 96 channels: fan_in 864
    bound = (3 / 864) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.99 * bound
    assert abs(conv.weight.var().item() - bound**2 / 3) < 0.02 * bound**2  # U(-a, a) has variance a^2 / 3
    assert torch.all(conv.bias == 0.2) and torch.all(model.aux1.fc1.bias == 0.2)
    for classifier in (model.fc, model.aux1.fc2, model.aux2.fc2):
        assert torch.all(classifier.bias == 0)


def test_seeded_build_is_reproducible() -> None:
    a, b = build(GoogLeNetConfig(width=0.25), seed=3), build(GoogLeNetConfig(width=0.25), seed=3)
    c = build(GoogLeNetConfig(width=0.25), seed=4)
    assert torch.equal(a.conv1.conv.weight, b.conv1.conv.weight)
    assert not torch.equal(a.conv1.conv.weight, c.conv1.conv.weight)


def test_lrn_matches_torch_and_caffe() -> None:
    x = torch.randn(2, 192, 9, 9) * 20
    ours = LocalResponseNorm()(x)
    torch_lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    padded = nn.functional.pad(x * x, (0, 0, 0, 0, 2, 2))  # Caffe by hand: zero-padded channel window
    window = torch.stack([padded[:, c : c + 5].sum(1) for c in range(192)], 1)
    caffe = x / (1 + 1e-4 / 5 * window) ** 0.75
    torch.testing.assert_close(ours, torch_lrn, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours, caffe, rtol=1e-6, atol=1e-5)


def test_width_multiplier_scales_every_stage() -> None:
    wide = build(GoogLeNetConfig(width=1.25, aux_logits=False))
    assert wide.conv1.conv.out_channels == 80 and wide.fc.in_features == 1280
    odd = build(GoogLeNetConfig(width=0.15625, variant="torchvision"))  # rounded branches: 83 != w(528)
    assert odd.aux2.conv.conv.in_channels == odd.inception4d.out_channels == 83
    assert all(t.shape == (1, 1000) for t in odd.train()(torch.zeros(1, 3, 224, 224)))
    tiny = build(GoogLeNetConfig(width=0.125, aux_logits=False))
    assert tiny.fc.in_features == 128 and count_parameters(tiny) < 300_000
    with pytest.raises(ValueError):
        GoogLeNetConfig(width=0)
    with pytest.raises(ValueError):
        GoogLeNetConfig(variant="inception-v3")  # type: ignore[arg-type]


def test_torchvision_weights_load_and_give_torchvision_logits(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(
        weights=None, aux_logits=True, init_weights=True, transform_input=True
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mis-mapped key would show
        for name, buf in reference.named_buffers():
            if "running_mean" in name:
                buf.uniform_(-0.1, 0.1)
            elif "running_var" in name:
                buf.uniform_(0.5, 1.5)
    path = tmp_path / "googlenet-random.pth"
    torch.save(reference.state_dict(), path)
    ours = load_torchvision_weights(str(path))
    assert ours.aux1 is None and not ours.config.aux_logits
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        diff = (ours.eval()(x) - reference.eval()(x)).abs().max().item()
    print(f"torchvision googlenet vs our torchvision variant: max |logit diff| {diff:.2e}")
    assert diff <= 1e-5
