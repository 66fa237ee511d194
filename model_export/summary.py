"""`summary`: per-layer output shape, parameters and multiply-adds, next to the paper's Table 1.

Measured by running one 224x224 image through the model with hooks; the paper's columns are
quoted in docs/googlenet.md 1 (its "K" is 1024).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model_export.model import GoogLeNetConfig, build

# A relative gap above this is a real discrepancy, not the table's rounding (docs/googlenet.md 1).
TOLERANCE = 0.03


@dataclass(frozen=True)
class PaperRow:
    name: str
    modules: tuple[str, ...]  # our top-level modules that make up the row
    type: str
    patch: str = ""
    output: str = ""
    depth: int = 0
    params_k: float | None = None  # Table 1 "params", K = 1024 weights
    ops_m: float | None = None  # Table 1 "ops", million multiply-adds


TABLE1 = (
    PaperRow("conv1", ("conv1",), "convolution", "7x7/2", "112x112x64", 1, 2.7, 34),
    PaperRow("maxpool1", ("maxpool1",), "max pool", "3x3/2", "56x56x64"),
    PaperRow("lrn1", ("lrn1",), "local resp. norm (Fig. 3)", "5", "56x56x64"),
    PaperRow("conv2", ("conv2", "conv3"), "convolution", "3x3/1", "56x56x192", 2, 112, 360),
    PaperRow("lrn2", ("lrn2",), "local resp. norm (Fig. 3)", "5", "56x56x192"),
    PaperRow("maxpool2", ("maxpool2",), "max pool", "3x3/2", "28x28x192"),
    PaperRow("3a", ("inception3a",), "inception (3a)", "", "28x28x256", 2, 159, 128),
    PaperRow("3b", ("inception3b",), "inception (3b)", "", "28x28x480", 2, 380, 304),
    PaperRow("maxpool3", ("maxpool3",), "max pool", "3x3/2", "14x14x480"),
    PaperRow("4a", ("inception4a",), "inception (4a)", "", "14x14x512", 2, 364, 73),
    PaperRow("4b", ("inception4b",), "inception (4b)", "", "14x14x512", 2, 437, 88),
    PaperRow("4c", ("inception4c",), "inception (4c)", "", "14x14x512", 2, 463, 100),
    PaperRow("4d", ("inception4d",), "inception (4d)", "", "14x14x528", 2, 580, 119),
    PaperRow("4e", ("inception4e",), "inception (4e)", "", "14x14x832", 2, 840, 170),
    PaperRow("maxpool4", ("maxpool4",), "max pool", "3x3/2", "7x7x832"),
    PaperRow("5a", ("inception5a",), "inception (5a)", "", "7x7x832", 2, 1072, 54),
    PaperRow("5b", ("inception5b",), "inception (5b)", "", "7x7x1024", 2, 1388, 71),
    PaperRow("avgpool", ("avgpool",), "avg pool", "7x7/1", "1x1x1024"),
    PaperRow("dropout", ("dropout",), "dropout (40%)", "", "1x1x1024"),
    PaperRow("linear", ("fc",), "linear", "", "1x1x1000", 1, 1000, 1),
    PaperRow("softmax", (), "softmax", "", "1x1x1000"),
)


@dataclass
class Row:
    name: str
    type: str
    patch: str
    output: str  # measured, H x W x C like the paper
    paper_output: str
    params: int = 0  # ours, with biases / BatchNorm
    weights: int = 0  # conv and linear weights only: what the paper's column counts
    macs: int = 0
    paper_params_k: float | None = None
    paper_ops_m: float | None = None
    differs: list[str] = field(default_factory=list)


def summarize(config: GoogLeNetConfig) -> dict[str, Any]:
    model = build(config).eval()
    macs: dict[nn.Module, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def count_macs(module: nn.Module, _: Any, out: torch.Tensor) -> None:
        # One multiply-add per weight per output position (docs/googlenet.md 1); biases are free.
        positions = out.shape[2] * out.shape[3] if out.dim() == 4 else 1
        macs[module] = module.weight.numel() * positions

    def record_shape(name: str):
        return lambda _m, _i, out: shapes.__setitem__(name, tuple(out.shape[1:]))

    handles = [
        m.register_forward_hook(count_macs) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    handles += [getattr(model, n).register_forward_hook(record_shape(n)) for n, _ in model.named_children()]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for handle in handles:
        handle.remove()

    rows = []
    for paper in TABLE1:
        modules = [getattr(model, n) for n in paper.modules]
        if modules and all(isinstance(m, nn.Identity) for m in modules):
            continue  # torchvision has no LRN
        out = shapes[paper.modules[-1]] if modules else shapes["fc"]
        row = Row(
            paper.name,
            paper.type,
            paper.patch,
            _hwc(out),
            paper.output,
            paper_params_k=paper.params_k,
            paper_ops_m=paper.ops_m,
        )
        if config.variant == "torchvision":  # its own deviations (docs/googlenet.md 5)
            row.patch = {"maxpool4": "2x2/2", "avgpool": "adaptive"}.get(paper.name, row.patch)
            row.type = {"dropout": "dropout (20%)"}.get(paper.name, row.type)
        for m in modules:
            row.params += sum(p.numel() for p in m.parameters())
            row.weights += sum(x.weight.numel() for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
            row.macs += sum(macs.get(x, 0) for x in m.modules())
        if paper.params_k is not None and _off(row.weights / 1024, paper.params_k):
            row.differs.append(f"params {row.weights / 1024:.1f}K vs paper {paper.params_k:g}K")
        if paper.ops_m is not None and _off(row.macs / 1e6, paper.ops_m):
            row.differs.append(f"ops {row.macs / 1e6:.1f}M vs paper {paper.ops_m:g}M")
        rows.append(row)

    main = [p for n, p in model.named_parameters() if not n.startswith("aux")]
    totals = {
        "params": sum(p.numel() for p in main),
        "weights": sum(r.weights for r in rows),
        "macs": sum(r.macs for r in rows),
        "aux_params": sum(p.numel() for n, p in model.named_parameters() if n.startswith("aux")),
        "paper_params_k": sum(r.params_k or 0 for r in TABLE1),
        "paper_ops_m": sum(r.ops_m or 0 for r in TABLE1),
    }
    return {
        "variant": config.variant,
        "width": config.width,
        "rows": [vars(r) for r in rows],
        "totals": totals,
        "differs": {r.name: r.differs for r in rows if r.differs},
    }


def _off(ours: float, paper: float) -> bool:
    return abs(ours / paper - 1) > TOLERANCE


def _hwc(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[0]}" if len(shape) == 3 else f"1x1x{shape[0]}"


def render(summary: dict[str, Any]) -> str:
    head = (
        "row",
        "type",
        "patch",
        "output",
        "paper output",
        "params",
        "weights K",
        "paper K",
        "MACs M",
        "paper M",
        "",
    )
    lines = []
    for r in summary["rows"]:
        lines.append(
            (
                r["name"],
                r["type"],
                r["patch"],
                r["output"],
                r["paper_output"],
                f"{r['params']:,}" if r["params"] else "",
                f"{r['weights'] / 1024:.1f}" if r["weights"] else "",
                _opt(r["paper_params_k"]),
                f"{r['macs'] / 1e6:.1f}" if r["macs"] else "",
                _opt(r["paper_ops_m"]),
                "*" if r["differs"] else "",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 5 else f"{{:>{w}}}" for i, w in enumerate(widths))
    t = summary["totals"]
    out = [f"GoogLeNet, {summary['variant']} variant, width {summary['width']:g} (input 224x224x3)", ""]
    out += [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    out += [
        "",
        f"total params (main path, with biases/BN): {t['params']:,}   aux heads: {t['aux_params']:,}",
        (
            f"total weights: {t['weights']:,} ({t['weights'] / 1024:,.1f}K; paper column sums to "
            f"{t['paper_params_k']:,.1f}K)"
        ),
        f"total multiply-adds: {t['macs'] / 1e9:.3f}G (paper column sums to {t['paper_ops_m'] / 1e3:.3f}G)",
        "",
        f"* rows where the paper's printed figure differs from the arithmetic by more than {TOLERANCE:.0%}:",
    ]
    out += [f"  {name}: {'; '.join(d)}" for name, d in summary["differs"].items()] or ["  none"]
    if summary["variant"] == "torchvision":
        out.append(
            "  (the torchvision variant's 3x3 'branch3' replaces the 5x5 convs, docs/googlenet.md 5)"
        )
    return "\n".join(out)


def _opt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def main(args: Any) -> None:
    summary = summarize(GoogLeNetConfig(variant=args.variant, width=args.width))
    print(json.dumps(summary, indent=2) if args.json else render(summary))
