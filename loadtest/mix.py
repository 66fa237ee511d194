"""Request mixes: `1x1:0.9,10x1:0.09,144x7:0.01` = crops x models with their shares of the requests."""

from __future__ import annotations

import random
from dataclasses import dataclass

from service.crops import CROP_COUNTS  # the paper's test-time protocols


@dataclass(frozen=True)
class Mode:
    crops: int
    models: int

    @property
    def name(self) -> str:
        return f"{self.crops}x{self.models}"

    @property
    def evaluations(self) -> int:
        """Model evaluations per image: the paper's cost column (Table 3)."""
        return self.crops * self.models

    @classmethod
    def parse(cls, text: str) -> Mode:
        crops, sep, models = text.strip().lower().partition("x")
        if not sep or not crops.isdigit() or not models.isdigit():
            raise ValueError(f"a mode is CROPSxMODELS such as 1x1 or 144x7, got {text!r}")
        mode = cls(int(crops), int(models))
        if mode.crops not in CROP_COUNTS or mode.models < 1:
            raise ValueError(f"crops must be one of {CROP_COUNTS} and models >= 1, got {text!r}")
        return mode


@dataclass(frozen=True)
class Mix:
    modes: tuple[Mode, ...]
    weights: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Mix:
        """`MODE[:SHARE],...`; shares are normalised, a missing share counts 1."""
        modes, weights = [], []
        for part in filter(None, (p.strip() for p in text.split(","))):
            mode, _, share = part.partition(":")
            try:
                weight = float(share) if share else 1.0
            except ValueError:
                raise ValueError(f"the share in {part!r} is not a number") from None
            if not weight > 0:
                raise ValueError(f"the share in {part!r} must be positive")
            modes.append(Mode.parse(mode))
            weights.append(weight)
        if not modes:
            raise ValueError("the request mix is empty")
        if len(set(modes)) != len(modes):
            raise ValueError(f"a mode appears twice in the mix {text!r}")
        total = sum(weights)
        return cls(tuple(modes), tuple(w / total for w in weights))

    def choose(self, rng: random.Random) -> Mode:
        return self.modes[0] if len(self.modes) == 1 else rng.choices(self.modes, self.weights)[0]

    @property
    def evaluations(self) -> float:
        """Mean model evaluations per request."""
        return sum(m.evaluations * w for m, w in zip(self.modes, self.weights, strict=True))

    def __str__(self) -> str:
        return ",".join(f"{m.name}:{w:g}" for m, w in zip(self.modes, self.weights, strict=True))
