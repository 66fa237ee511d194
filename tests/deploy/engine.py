"""A Docker engine for the container tests, got the way a fresh Debian machine can: Debian's `docker.io`
started with no bridge and no iptables (containers share the host's network, nothing else is made), on
a socket, data root and exec root of its own, and a base image made with debootstrap (no registry)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import _apt_retry

# Debian's client: BuildKit is built in (a newer CLI wants the buildx plugin for it)
DOCKER = "/usr/bin/docker"
STATE = Path("/var/lib/googlenet-serving-docker")
RUN = Path("/run/googlenet-serving-docker")
BASE_IMAGE = "local/python:3.11-bookworm"
SUITE = "bookworm"  # Python 3.11, as the Dockerfile's default base
REQUIRE = "GOOGLENET_REQUIRE_DOCKER"  # set (CI): a missing engine fails instead of skipping


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE):
        pytest.fail(f"{REQUIRE} is set but {reason}")
    pytest.skip(reason)


class Engine:
    """`docker` against one engine; `started` is the dockerd these tests started (stopped at the end)."""

    def __init__(self, host: str, started: subprocess.Popen[bytes] | None = None) -> None:
        self.host = host
        self.started = started
        self.env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"}

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([DOCKER, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} -> {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done

    def answers(self) -> bool:
        if not Path(DOCKER).exists():
            return False
        return self("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0

    def stop(self) -> None:
        if self.started is None:
            return
        self.started.terminate()  # dockerd stops its containers and its containerd on SIGTERM
        try:
            self.started.wait(60)
        except subprocess.TimeoutExpired:
            self.started.kill()
            self.started.wait(10)
        # dockerd leaves its default network namespace mounted under the exec root: release it too
        for line in Path("/proc/mounts").read_text().splitlines():
            if line.split()[1].startswith(f"{RUN}/"):
                subprocess.run(["umount", line.split()[1]], check=False, capture_output=True, timeout=30)


def start_engine() -> Engine:
    """DOCKER_HOST's engine if it answers; else dockerd of our own (installed with apt-get if missing)."""
    if os.environ.get("DOCKER_HOST"):
        engine = Engine(os.environ["DOCKER_HOST"])
        if engine.answers():
            return engine
    engine = Engine(f"unix://{RUN}/docker.sock")
    if engine.answers():  # left running by an interrupted session: reuse it, leave it running
        return engine
    if os.geteuid() != 0:
        unavailable("not root: cannot install or start a Docker engine")
    if not (shutil.which("dockerd") and Path(DOCKER).exists() and shutil.which("debootstrap")):
        if not shutil.which("apt-get"):
            unavailable("no Docker engine and no apt-get to install Debian's docker.io")
        done = _apt_retry("install", "-y", "--no-install-recommends", "docker.io", "debootstrap")
        if done.returncode != 0:
            unavailable(f"apt-get install docker.io debootstrap failed: {done.stderr.strip()[-200:]}")
    RUN.mkdir(parents=True, exist_ok=True)
    # the build cache is bounded: BuildKit drops its least recently used records past this size
    (RUN / "daemon.json").write_text('{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "20GB"}}}')
    log = (RUN / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        [
            shutil.which("dockerd") or "dockerd",
            f"--host={engine.host}",
            f"--data-root={STATE}",
            f"--exec-root={RUN}/exec",
            f"--pidfile={RUN}/dockerd.pid",
            f"--config-file={RUN}/daemon.json",
            # no docker0 bridge, no NAT rules: containers run with --network host only
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine.started = proc
    deadline = time.monotonic() + 90
    while not engine.answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = (RUN / "dockerd.log").read_text(errors="replace")[-1500:]
            pytest.fail(f"dockerd did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.2)
    return engine


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources, else the one-line format)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        words = line.split()
        if words[:1] == ["deb"] and "security" not in line:
            return next(w for w in words[1:] if "://" in w)
    raise AssertionError("no Debian mirror in the apt sources")


def make_base_image(engine: Engine, workdir: Path) -> str:
    """Debian's Python 3.11 with pip and venv, imported as BASE_IMAGE once and reused after."""
    if engine("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    rootfs = workdir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)  # a half-made one from an interrupted run
    done = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates",
            SUITE,
            str(rootfs),
            apt_mirror(),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name, target in (("python", "python3"), ("pip", "pip3")):  # the names the Dockerfile runs
        link = rootfs / "usr/bin" / name
        if not link.exists():
            link.symlink_to(target)
    # the host's CA bundle: pip in the build trusts what the host's pip trusts (e.g. a TLS proxy)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            DOCKER,
            "import",
            "--change",
            "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "-",
            BASE_IMAGE,
        ],
        stdin=tar.stdout,
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tar.wait(60)
    shutil.rmtree(rootfs, ignore_errors=True)
    assert imported.returncode == 0 and tar.returncode == 0, imported.stderr[-2000:]
    return BASE_IMAGE


def build(engine: Engine, root: Path, *args: str, tag: str | None = None, timeout: float = 1200) -> None:
    """`docker build` of the project with BuildKit on the host's network; its cache makes reruns quick.
    A rebuild under `tag` removes the image it replaces, by id, so changes do not pile up images."""
    old = engine("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip() if tag else ""
    tagged = ["--tag", tag] if tag else []
    engine(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        *tagged,
        *args,
        ".",
        cwd=root,
        timeout=timeout,
    )
    if old and old != engine("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip():
        engine("image", "rm", old, check=False)  # refused (and kept) while a container still uses it


def build_serve(engine: Engine, root: Path, variant: str) -> str:
    """The `serve` target for `variant` (cpu, gpu), tagged as Compose names it so reruns reuse it."""
    tag = f"googlenet-serving:{variant}"
    build(engine, root, "--target", "serve", "--build-arg", f"VARIANT={variant}", tag=tag)
    return tag
