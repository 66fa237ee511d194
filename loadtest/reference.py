"""What a GPU service's answers are checked against: the same image, crops and members on ONNX
Runtime's CPU provider in fp32, averaged as the service averages (service/postprocess.py), and
the comparison of whole distributions (every class, not the top-k) over /v1/classify.

    reference = Reference(Path("model_repository"))
    report = compare(url, reference, images, ["1x1", "10x7"])
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadtest.mix import Mode
from service.contract import CLASSES
from service.postprocess import average
from service.preprocess import preprocess
from service.repository import load_repository
from service.runtime import OnnxModel

MAX_PIXELS = 50_000_000


class Reference:
    """The fp32 members of a repository on the CPU provider, opened when first needed."""

    def __init__(self, repository: Path, *, threads: int | None = None) -> None:
        self.repository = load_repository(repository, precision="fp32")
        self.threads = threads or os.cpu_count() or 1  # 144x7 is 1,008 float32 runs per image
        self._models: dict[str, OnnxModel] = {}
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}

    def _model(self, index: int) -> OnnxModel:
        entry = self.repository.members[index]
        if entry.name not in self._models:
            self._models[entry.name] = OnnxModel(
                entry.path, provider="cpu", max_batch_size=16, intra_op_threads=self.threads
            )
        return self._models[entry.name]

    def probabilities(self, image: bytes, crops: int, models: int) -> np.ndarray:
        """float64 [1000]: mean over the crops, then over the first `models` members."""
        key = (hash(image), crops, models)
        if key not in self._cache:
            rows = preprocess(image, crops, max_pixels=MAX_PIXELS)
            per_member = [
                np.concatenate([self._model(m).run(rows[i : i + 16]) for i in range(0, len(rows), 16)])
                for m in range(models)
            ]
            self._cache[key] = average(per_member, 1)[0]
        return self._cache[key]


def distribution(body: dict[str, Any]) -> np.ndarray:
    """The whole distribution of a /v1/classify?topk=1000 answer, by class index."""
    out = np.zeros(CLASSES)
    for p in body["predictions"]:
        out[p["index"]] = p["probability"]
    return out


def compare(
    url: str, reference: Reference, images: list[bytes], modes: list[str], *, tolerance: float,
    timeout_s: float = 120.0,
) -> dict[str, dict[str, Any]]:
    """Each image alone in each mode against the reference: the largest absolute difference of any
    class's probability, the same relative to the reference's range (max - min, the sensitive
    figure for near-uniform untrained answers), top-1 agreement where the reference's top two are
    more than twice `tolerance` apart, and the server's own `timings_ms`."""
    report: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        for name in modes:
            mode = Mode.parse(name)
            row: dict[str, Any] = {"n": 0, "errors": 0, "max_abs": 0.0, "max_rel": 0.0, "top1_clear": 0,
                                   "top1_agree": 0, "ms": [], "timings_ms": []}
            for image in images:
                started = time.perf_counter()
                answer = client.post("/v1/classify", params={"crops": mode.crops, "models": mode.models,
                                                             "topk": CLASSES}, content=image,
                                     headers={"content-type": "image/jpeg"})
                row["n"] += 1
                if answer.status_code != 200:
                    row["errors"] += 1
                    continue
                row["ms"].append((time.perf_counter() - started) * 1000)
                body = answer.json()
                row["timings_ms"].append(body["timings_ms"])
                got, want = distribution(body), reference.probabilities(image, mode.crops, mode.models)
                diff = float(np.abs(got - want).max())
                row["max_abs"] = max(row["max_abs"], diff)
                row["max_rel"] = max(row["max_rel"], diff / max(float(want.max() - want.min()), 1e-12))
                first, second = np.sort(want)[-2:][::-1]
                if first - second > 2 * tolerance:  # clearly apart: no allowed rounding could swap them
                    row["top1_clear"] += 1
                    row["top1_agree"] += int(np.argmax(got) == np.argmax(want))
            report[name] = row
    return report
