"""The image's recipe without Docker: build the wheel from exactly what the wheel stage copies, install it
into a fresh virtual environment with the image's install script (VARIANT=cpu), start it with the image's
command and environment, and get 200 from /readyz and /v1/classify on the tiny repository."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_image, wait_ready
from tests.deploy.conftest import stages


def image_env(runtime: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, value in runtime:
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(value))
    return env


@pytest.mark.slow  # ~45-75 s: pip unpacks onnxruntime-gpu (~340 MB) into the fresh venv
def test_wheel_installs_and_serves_like_the_image(repo_root: Path, tiny_repo: Path, tmp_path: Path) -> None:
    all_stages = stages(repo_root / "Dockerfile")

    # 1. the wheel stage: copy what it copies, run its `pip wheel` line
    src = tmp_path / "src"
    src.mkdir()
    for instruction, value in all_stages["wheel"]:
        if instruction == "COPY":
            *sources, _ = value.split()
            for name in sources:
                copy = shutil.copytree if (repo_root / name).is_dir() else shutil.copy2
                copy(repo_root / name, src / name)
    (build,) = [v for i, v in all_stages["wheel"] if i == "RUN" and v.startswith("pip wheel")]
    wheels = tmp_path / "wheels"
    args = shlex.split(build.replace("/wheels", str(wheels)))
    done = subprocess.run([sys.executable, "-m", *args], cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(wheels.glob("googlenet_serving-*.whl"))) == 1

    # 2. the runtime stage's install step, same script, same arguments but paths (cpu variant)
    runtime = all_stages["runtime"]
    (install,) = [v for i, v in runtime if i == "RUN" and "install-service.sh" in v]
    assert '/opt/googlenet/install-service.sh "${VARIANT}" /wheels /opt/venv' in install
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["sh", str(repo_root / "deploy/docker/install-service.sh"), "cpu", str(wheels), str(venv)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    pip_list = subprocess.run(
        [str(venv / "bin/pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "torch" not in {p["name"] for p in json.loads(pip_list)}  # the serving install has no torch

    # 3. the image's command and environment; only the paths and the ports differ (loopback, free ports)
    env = image_env(runtime)
    with socket.socket() as s, socket.socket() as g:
        s.bind(("127.0.0.1", 0))
        g.bind(("127.0.0.1", 0))
        port, grpc_port = s.getsockname()[1], g.getsockname()[1]
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GOOGLENET_HOST": "127.0.0.1",
        "GOOGLENET_PORT": str(port),
        "GOOGLENET_GRPC_PORT": str(grpc_port),
        "GOOGLENET_MODEL_REPOSITORY": str(tiny_repo),
        "HOME": str(tmp_path),
    }
    (cmd,) = [json.loads(v) for i, v in runtime if i == "CMD"]
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", proc, log=log)
        answer = httpx.post(
            f"{url}/v1/classify", content=make_image(), headers={"content-type": "image/jpeg"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 5
        # the same healthcheck the image runs
        check = subprocess.run(
            [str(venv / "bin/python"), str(repo_root / "deploy/docker/healthcheck.py")], env=env, timeout=30
        )
        assert check.returncode == 0
        proc.terminate()
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
