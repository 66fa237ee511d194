"""Training checkpoints: what a file holds, writing it atomically, and rebuilding the exportable model.

Only tensors and plain Python values are stored, so every load uses `weights_only=True`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from model_export.model import GoogLeNet, GoogLeNetConfig, build


def save(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file, then rename: an interrupted run never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def inference_model(path: str | Path) -> tuple[GoogLeNet, dict[str, Any]]:
    """The Polyak-averaged weights of a checkpoint in an eval-mode model without aux heads, and its record.

    Accepts a training checkpoint (keys "config", "averaged_model" or "model") as written by `train`.
    """
    state = load(path)
    if "config" not in state:
        raise ValueError(
            f"{path} is not a training checkpoint of this package (no 'config'); "
            "for torchvision's googlenet weights use --torchvision-weights"
        )
    config = replace(GoogLeNetConfig(**state["config"]), aux_logits=False)
    model = build(config)
    weights = state.get("averaged_model") or state["model"]
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("aux")})
    return model.eval(), state
