"""The naive baseline answers like the service (same preprocessing, same model files) and refuses
bad images with the same JSON error."""

from __future__ import annotations

from pathlib import Path

import httpx

from loadtest.servers import ServerProcess
from tests.conftest import make_image


def test_baseline_classifies_and_refuses_bad_images(tiny_repo: Path, server) -> None:
    image = make_image(seed=3)
    with ServerProcess("loadtest.baseline", ["--model-repository", str(tiny_repo), "--models", "2"]) as baseline:
        with httpx.Client(base_url=baseline.url, timeout=30) as client:
            mine = client.post("/v1/classify?crops=10&models=2&topk=3", content=image)
            bad = client.post("/v1/classify", content=b"\xff\xd8 not really a jpeg")
        assert baseline.cpu_seconds() > 0
    assert mine.status_code == 200 and len(mine.json()["predictions"]) == 3
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_image"
    with server.client() as client:  # the service on the same repository: the same top class
        theirs = client.post("/v1/classify?crops=10&models=2&topk=3", content=image,
                             headers={"content-type": "image/jpeg"}).json()
    assert mine.json()["predictions"][0]["index"] == theirs["predictions"][0]["index"]
