"""Tools the deploy checks run, got the way a fresh CI machine can: Debian packages, installed or unpacked
once and reused (idempotent); a test skips with the reason only where a tool truly cannot be had."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dockerfile_parse import DockerfileParser

from tests.conftest import ROOT

if TYPE_CHECKING:
    from tests.deploy.engine import Engine

CACHE = Path.home() / ".cache" / "googlenet-serving"


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True, timeout=300)


def _apt_retry(*args: str) -> subprocess.CompletedProcess[str]:
    """Run apt-get; on failure refresh the package lists once (a fresh machine may have none) and retry."""
    done = _apt(*args)
    if done.returncode != 0:
        _apt("update")
        done = _apt(*args)
    return done


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """docker-compose v1 from Debian: pip's docker-compose 1.29.2 cannot build on Python 3.11 (it pins
    PyYAML < 6, whose sdist fails with Cython 3); Debian's package runs on 3.11 (docs/deployment.md)."""
    if not shutil.which("docker-compose") and shutil.which("apt-get"):
        done = _apt_retry("install", "-y", "--no-install-recommends", "docker-compose")
        if done.returncode != 0:
            pytest.skip(f"apt-get install docker-compose failed: {done.stderr[-300:]}")
    path = shutil.which("docker-compose")
    if not path:
        pytest.skip("docker-compose is not installable here (no apt-get)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """The folder holding Debian's `prometheus` and `promtool`, unpacked (not installed: no daemon starts)."""
    bindir = CACHE / "prometheus" / "usr" / "bin"
    if (bindir / "prometheus").exists() and (bindir / "promtool").exists():
        return bindir
    if not shutil.which("apt-get"):
        pytest.skip("no apt-get to fetch Debian's prometheus package")
    download = CACHE / "deb"
    download.mkdir(parents=True, exist_ok=True)
    for old in download.glob("prometheus_*.deb"):
        old.unlink()
    done = subprocess.run(
        ["apt-get", "-q", "download", "prometheus"], cwd=download, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        subprocess.run(["apt-get", "-q", "update"], capture_output=True, timeout=300)
        done = subprocess.run(
            ["apt-get", "-q", "download", "prometheus"],
            cwd=download,
            capture_output=True,
            text=True,
            timeout=300,
        )
    debs = sorted(download.glob("prometheus_*.deb"))
    if done.returncode != 0 or not debs:
        pytest.skip(f"apt-get download prometheus failed: {done.stderr[-300:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(CACHE / "prometheus")], check=True, timeout=120)
    return bindir


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl with its built-in kustomize (pip has no kustomize binary)."""
    if not shutil.which("kubectl") and shutil.which("apt-get"):
        _apt_retry("install", "-y", "--no-install-recommends", "kubectl")
    path = shutil.which("kubectl")
    if not path:
        pytest.skip(
            "kubectl (for `kubectl kustomize`) is not installable from this machine's package sources"
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A running Docker engine (tests/deploy/engine.py); one the tests started themselves is stopped after."""
    from tests.deploy.engine import start_engine  # engine.py imports this module's apt helper

    engine = start_engine()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def base_image(docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local Debian base every build here starts from (no registry is reachable)."""
    from tests.deploy.engine import make_base_image

    return make_base_image(docker_engine, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def cpu_image(docker_engine: Engine, base_image: str, repo_root: Path) -> str:
    """The `serve` target, VARIANT=cpu, on the local base; tagged as Compose names it, so reruns reuse it."""
    from tests.deploy.engine import build_serve

    return build_serve(docker_engine, repo_root, "cpu")


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (instruction, value) list, in order."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for item in DockerfileParser(str(dockerfile)).structure:
        if item["instruction"] == "FROM":
            current = out.setdefault(item["value"].split(" AS ")[-1].strip(), [])
        if item["instruction"] != "COMMENT":
            current.append((item["instruction"], item["value"]))
    return out
