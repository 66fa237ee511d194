"""The image built and run for real on a Docker engine (tests/deploy/engine.py), on a local Debian base:
the `serve` target with VARIANT=cpu, through `docker run` and Compose; VARIANT=gpu built and checked; the
`repository` target. Every container runs on the host's network (no bridge is ever made) with the service
on 127.0.0.1 only, and is removed by its id at the end."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from loadtest.servers import free_port
from tests.conftest import classify_count, make_image
from tests.deploy.engine import BASE_IMAGE, DOCKER, Engine, build, build_serve

# Building the image on a fresh machine (engine, base image, pip) can take minutes: one bound for all.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

READY_S = 180  # the image's HEALTHCHECK start period: the longest a start may take
GRACE_S = 40  # docker stop -t: Compose's stop_grace_period (30 s drain + margin)
LOAD = 4  # concurrent 144-crop x 3-model requests, one 2-row batch at a time: still running at the stop
REPOSITORY_TARGET = "GOOGLENET_TEST_REPOSITORY_TARGET"


@dataclass
class Container:
    id: str
    url: str


@pytest.fixture(scope="module")
def models(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository, readable by the image's uid 10001 (pytest's temporary folders are root's only)."""
    root = tmp_path_factory.mktemp("mounted") / "models"
    shutil.copytree(tiny_repo, root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def inspect(engine: Engine, cid: str, fmt: str) -> str:
    return engine("inspect", "--format", fmt, cid).stdout.strip()


def wait_ready(engine: Engine, container: Container) -> None:
    """/readyz 200 within the start period; fails at once, with the logs, if the container exits."""
    deadline = time.monotonic() + READY_S
    while True:
        try:
            if httpx.get(f"{container.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        running = inspect(engine, container.id, "{{.State.Running}}") == "true"
        if not running or time.monotonic() > deadline:
            logs = engine("logs", "--tail", "60", container.id, check=False)
            pytest.fail(f"not ready (running={running})\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        time.sleep(0.2)


@contextmanager
def container(engine: Engine, image: str, models: Path, *args: str, **env: str) -> Iterator[Container]:
    """`docker run` of the image on the host network, listening on a free 127.0.0.1 port; removed by id."""
    port = free_port()
    env = {
        "GOOGLENET_HOST": "127.0.0.1",
        "GOOGLENET_PORT": str(port),
        "GOOGLENET_GRPC_PORT": str(free_port()),
    } | env
    cid = engine(
        "run",
        "--detach",
        "--network",
        "host",
        "--volume",
        f"{models}:/models:ro",
        *[f"--env={k}={v}" for k, v in env.items()],
        *args,
        image,
    ).stdout.strip()
    try:
        box = Container(cid, f"http://127.0.0.1:{port}")
        wait_ready(engine, box)
        yield box
    finally:
        engine("rm", "--force", cid, check=False)


@pytest.fixture(scope="module")
def serving(docker_engine: Engine, cpu_image: str, models: Path) -> Iterator[Container]:
    with container(docker_engine, cpu_image, models) as box:
        yield box


def classify(url: str, **params: object) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/classify",
        params=params,
        content=make_image(),
        headers={"content-type": "image/jpeg"},
        timeout=60,
    )


def test_serves_v1_v2_and_metrics_from_a_read_only_repository(docker_engine: Engine, serving: Container) -> None:
    mounts = json.loads(inspect(docker_engine, serving.id, "{{json .Mounts}}"))
    assert [(m["Destination"], m["RW"]) for m in mounts] == [("/models", False)]

    answer = classify(serving.url, crops=10, models=3)
    assert answer.status_code == 200, answer.text
    assert answer.json()["evaluations"] == 30 and len(answer.json()["predictions"]) == 5

    with httpx.Client(base_url=serving.url, timeout=30) as client:
        assert client.get("/v2").json()["name"]
        assert client.get("/v2/health/ready").status_code == 200
        infer = client.post(
            "/v2/models/tiny/infer",
            json={
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(make_image()).decode()],
                    }
                ]
            },
        )
        assert infer.status_code == 200, infer.text
        assert infer.json()["outputs"][0]["shape"] == [1, 1000]
        metrics = client.get("/metrics").text
    assert 'googlenet_requests_total{mode="10x3",route="/v1/classify",status="200"} 1.0' in metrics
    assert "googlenet_model_info{" in metrics

    # Docker's own verdict, from the image's HEALTHCHECK (first run one interval after the start)
    deadline = time.monotonic() + 60
    while (health := inspect(docker_engine, serving.id, "{{.State.Health.Status}}")) == "starting":
        assert time.monotonic() < deadline, "still `starting` after 60 s"
        time.sleep(0.5)
    assert health == "healthy"


def test_runs_as_uid_10001_without_torch(docker_engine: Engine, serving: Container, cpu_image: str) -> None:
    status = docker_engine("exec", serving.id, "cat", "/proc/1/status").stdout  # the service is PID 1
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4
    packages = json.loads(docker_engine("exec", serving.id, "pip", "list", "--format=json").stdout)
    names = {p["name"].lower() for p in packages}
    assert "googlenet-serving" in names and not {n for n in names if n.startswith("torch")}
    assert inspect(docker_engine, cpu_image, "{{.Config.User}}") == "10001"


def test_docker_stop_under_load_answers_every_accepted_request_and_exits_zero(
    docker_engine: Engine, cpu_image: str, models: Path
) -> None:
    with (
        container(
            docker_engine,
            cpu_image,
            models,
            GOOGLENET_MAX_BATCH_SIZE="2",
            GOOGLENET_INSTANCES="1",
            GOOGLENET_MAX_QUEUE_ROWS="1024",  # room for the whole load: this test is about the stop
        ) as box,
        concurrent.futures.ThreadPoolExecutor(LOAD) as pool,
    ):
        futures = [pool.submit(classify, box.url, crops=144, models=3) for _ in range(LOAD)]
        deadline = time.monotonic() + 60
        while True:  # every request accepted and some still being served: now the stop counts
            answered, inflight = classify_count(box.url)
            assert inflight > 0 or answered < LOAD, "the load finished before the stop: make it heavier"
            if answered + inflight >= LOAD:
                break
            assert time.monotonic() < deadline, "the requests were not all accepted"
            time.sleep(0.05)
        stop = docker_engine("stop", "--time", str(GRACE_S), box.id, timeout=GRACE_S + 30)
        responses = [f.result(timeout=GRACE_S) for f in futures]
        assert [r.status_code for r in responses] == [200] * LOAD
        assert all(r.json()["evaluations"] == 432 for r in responses)
        assert stop.stdout.strip() == box.id
        # docker stop returns once the container is gone: SIGTERM drained it, or SIGKILL (137) after -t
        state = json.loads(inspect(docker_engine, box.id, "{{json .State}}"))
        logs = docker_engine("logs", box.id).stderr
        assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False), logs[-3000:]
        assert "not ready; closing the listener" in logs and "Traceback" not in logs


def test_read_only_root_filesystem_still_serves(docker_engine: Engine, cpu_image: str, models: Path) -> None:
    with container(docker_engine, cpu_image, models, "--read-only", "--tmpfs", "/tmp") as box:
        assert inspect(docker_engine, box.id, "{{.HostConfig.ReadonlyRootfs}}") == "true"
        assert classify(box.url, crops=10).status_code == 200
        assert httpx.get(f"{box.url}/metrics", timeout=10).status_code == 200
        write = docker_engine("exec", box.id, "touch", "/opt/venv/x", check=False)
        assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_compose_cpu_profile_serves(
    docker_engine: Engine, cpu_image: str, models: Path, docker_compose: str, repo_root: Path, tmp_path: Path
) -> None:
    """The `cpu` profile's service as Compose resolves it, with only the network changed: the host's network
    and a loopback port instead of a bridge network with published ports. Prometheus and Grafana stay out
    (their images come from a registry); test_compose.py checks their wiring."""
    env = {
        **docker_engine.env,
        "MODEL_REPOSITORY": str(models),
        "PATH": f"{Path(DOCKER).parent}:{os.environ['PATH']}",
    }
    resolved = subprocess.run(
        [docker_compose, "--profile", "cpu", "config"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resolved.returncode == 0, resolved.stderr
    service = yaml.safe_load(resolved.stdout)["services"]["googlenet-cpu"]
    port = free_port()
    for key in ("ports", "networks"):
        del service[key]
    service["network_mode"] = "host"
    service["environment"] |= {
        "GOOGLENET_HOST": "127.0.0.1",
        "GOOGLENET_PORT": str(port),
        "GOOGLENET_GRPC_PORT": str(free_port()),
    }
    service["build"]["args"]["PYTHON_IMAGE"] = BASE_IMAGE  # the local base, as the image fixture
    service["build"]["network"] = "host"
    (tmp_path / "compose.yml").write_text(yaml.safe_dump({"services": {"googlenet-cpu": service}}))

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                docker_compose,
                "--file",
                str(tmp_path / "compose.yml"),
                "--project-name",
                "googlenet-test",
                "--profile",
                "cpu",
                *args,
            ],
            env={
                **env,
                "COMPOSE_DOCKER_CLI_BUILD": "1",
            },  # BuildKit through the CLI: the Dockerfile's RUN --mount
            capture_output=True,
            text=True,
            timeout=600,
        )

    networks = docker_engine("network", "ls", "--quiet").stdout.split()
    up = compose("up", "--detach", "--build")
    cids = compose("ps", "--quiet").stdout.split()
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        (cid,) = cids
        box = Container(cid, f"http://127.0.0.1:{port}")
        wait_ready(docker_engine, box)
        assert classify(box.url).status_code == 200
        assert inspect(docker_engine, cid, "{{.HostConfig.NetworkMode}}") == "host"
        assert inspect(docker_engine, cid, "{{.Config.Image}}") == "googlenet-serving:cpu"
        assert docker_engine("network", "ls", "--quiet").stdout.split() == networks  # no network was made
    finally:
        for cid in cids:
            docker_engine("rm", "--force", cid, check=False)


@pytest.mark.skipif(
    not os.environ.get(REPOSITORY_TARGET),
    reason=f"installs torch (2.5-4.5 min fresh), which takes CI near 20 min: {REPOSITORY_TARGET}=1 runs it",
)
def test_repository_target_writes_a_repository_the_image_serves(
    docker_engine: Engine, cpu_image: str, repo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model_repository"
    out.mkdir()  # as docs/deployment.md says: a folder BuildKit makes itself is private to root (0700)
    build(
        docker_engine,
        repo_root,
        "--target",
        "repository",
        "--build-arg",
        "EXPORT_ARGS=--members 2 --precision fp32",
        "--output",
        f"type=local,dest={out}",
    )
    assert json.loads((out / "ensemble.json").read_text())["members"] == ["googlenet-0", "googlenet-1"]
    assert len((out / "labels.tsv").read_text().splitlines()) == 1000
    with container(docker_engine, cpu_image, out) as box:
        answer = classify(box.url, models=2)
        assert answer.status_code == 200 and answer.json()["members"] == ["googlenet-0", "googlenet-1"]


GPU_DISK = 25 * 2**30  # the GPU image (CUDA and cuDNN wheels, 3 GB) plus its build cache, with room to spare
CUDA_CHECK = """
import json, pathlib, subprocess, onnxruntime as ort, pynvml
lib = pathlib.Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
print(json.dumps({
    "providers": ort.get_available_providers(),
    "missing": sorted(line.split()[0] for line in ldd.splitlines() if "not found" in line),
}))
"""


@pytest.fixture(scope="module")
def gpu_image(docker_engine: Engine, base_image: str, repo_root: Path) -> str:
    root = docker_engine("info", "--format", "{{.DockerRootDir}}").stdout.strip()
    free = shutil.disk_usage(root).free
    if free < GPU_DISK:
        pytest.skip(f"{free / 2**30:.0f} GiB free where the engine keeps images: the GPU image needs ~25")
    return build_serve(docker_engine, repo_root, "gpu")


def test_gpu_variant_has_its_cuda_libraries_and_serves_on_cpu_without_a_gpu(
    docker_engine: Engine, gpu_image: str, models: Path
) -> None:
    """No GPU here: the CUDA provider must find every library but the driver's, which the host brings."""
    done = docker_engine("run", "--rm", "--network", "none", gpu_image, "python", "-c", CUDA_CHECK)
    found = json.loads(done.stdout)
    assert "CUDAExecutionProvider" in found["providers"]
    assert set(found["missing"]) <= {"libcuda.so.1"}, found["missing"]
    with container(docker_engine, gpu_image, models) as box:  # providers=auto falls back to the CPU
        assert classify(box.url).status_code == 200
        assert 'provider="cpu"' in httpx.get(f"{box.url}/metrics", timeout=10).text
