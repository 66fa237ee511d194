"""When an adaptive walk stops (service/adaptive.py): the rule, its thresholds and their file.

After each rung of the Table 3 ladder an image stops when the averaged softmax is confident
enough: the margin between its two most probable classes reaches the rung's threshold (selective
test-time augmentation spends crops only on the least certain images). The thresholds belong to a
repository: `python -m model_export calibrate` measures them on held-out images and writes
`adaptive.json` at its root; without the file every rung uses `DEFAULT_MARGIN`. Pure arithmetic:
`model_export` applies the same rule to its cached probabilities.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FILE = "adaptive.json"
RULE = "margin"  # top-1 minus top-2 probability of the average so far
# Without calibration: stop once the best class leads the next by half the probability mass, a
# margin an untrained ensemble never reaches (it walks to the top) and a trained one often does.
DEFAULT_MARGIN = 0.5
# Why an image's walk ended: a closed set (metrics labels, the answer's `stop`).
REASONS = ("confident", "last_rung", "no_time", "deadline")


def margin(probabilities: np.ndarray) -> np.ndarray:
    """[..., classes] -> [...]: the best probability minus the second best."""
    top2 = np.partition(probabilities, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


@dataclass(frozen=True)
class StoppingRule:
    """Margin thresholds by rung label ("1x1", "10x7", ...); a rung not listed uses `default`."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    default: float = DEFAULT_MARGIN
    calibrated: bool = False  # read from the repository's adaptive.json

    def threshold(self, rung: str) -> float:
        return self.thresholds.get(rung, self.default)

    def confident(self, probabilities: np.ndarray, rung: str) -> np.ndarray:
        """[..., classes] -> bool [...]: stop here."""
        return margin(probabilities) >= self.threshold(rung)


def _threshold(value: object, where: str) -> float:
    # A threshold above 1 (JSON has no infinity) is never reached: that rung never stops an image.
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{FILE}: {where} must be a margin >= 0, got {value!r}")
    return float(value)


def parse(doc: Any) -> StoppingRule:
    """The rule of an adaptive.json document; ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"{FILE} must hold a JSON object")
    if doc.get("rule", RULE) != RULE:
        raise ValueError(f"{FILE}: rule must be {RULE!r}, got {doc.get('rule')!r}")
    thresholds = doc.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ValueError(f"{FILE}: thresholds must map rung labels such as '1x7' to margins")
    return StoppingRule(
        {str(k): _threshold(v, f"thresholds[{k!r}]") for k, v in thresholds.items()},
        _threshold(doc.get("default", DEFAULT_MARGIN), "default"),
        calibrated=True,
    )


def read(root: Path) -> StoppingRule:
    """The repository's rule, or the defaults when it has no adaptive.json."""
    path = root / FILE
    if not path.is_file():
        return StoppingRule()
    try:
        return parse(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"cannot read {FILE}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{FILE} is not JSON: {exc}") from None


def document(thresholds: Mapping[str, float], *, default: float = DEFAULT_MARGIN, **details: Any) -> dict[str, Any]:
    """What `calibrate` writes: the rule and thresholds the service reads, then whatever measured them."""
    return {"rule": RULE, "thresholds": dict(thresholds), "default": default, **details}
