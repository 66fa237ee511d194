"""scripts/serve, the README's run command: serving installs only what it needs, and the script
becomes the service, so SIGTERM drains it and the exit status is the service's (issue: make's 143)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from loadtest.servers import free_port
from tests.conftest import ROOT, wait_ready

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def test_serving_installs_the_service_and_the_export_extra_only() -> None:
    dry = subprocess.run(["make", "-n", "-B", "serve-venv"], cwd=ROOT, capture_output=True, text=True, check=True)
    (install,) = [line for line in dry.stdout.splitlines() if "pip install" in line]
    assert "'.[export]'" in install and "test" not in install and "loadtest" not in install


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="scripts/serve runs the project's .venv, which is not built")
def test_serve_execs_the_service_and_exits_zero_after_a_drain(tiny_repo: Path, tmp_path: Path) -> None:
    if subprocess.run(["make", "-q", "serve-venv"], cwd=ROOT).returncode != 0:
        pytest.skip("the .venv is older than pyproject.toml: scripts/serve would reinstall it")
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "REPOSITORY": str(tiny_repo)}
    args = [str(ROOT / "scripts" / "serve"), "--port", str(port), "--providers", "cpu", "--shutdown-delay-s", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout_s=120, log=log)
        # exec: the script's own process is now the service, so the supervisor's signal reaches it
        assert b"\0-m\0service\0" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
