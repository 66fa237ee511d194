"""docker-compose.yml checked by `docker-compose config` (Compose v1 from Debian) and by what it must wire:
the service, a GPU reservation, Prometheus and Grafana, model volume. The `cpu` profile's service also
runs for real (test_image.py); Prometheus and Grafana cannot, their images come from a registry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from service.settings import Settings


@pytest.fixture(scope="module")
def compose(docker_compose: str, repo_root: Path) -> dict[str, Any]:
    """The file as Compose itself resolves it (schema-validated, anchors and variables expanded)."""
    done = subprocess.run(
        [docker_compose, "--profile", "gpu", "--profile", "cpu", "config"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MODEL_REPOSITORY"},
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a resolved service's `source:target:mode` volume strings."""
    out = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_compose_rejects_a_broken_file(docker_compose: str, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  x:\n    image: busybox\n    portz: [80]\n")
    done = subprocess.run(
        [docker_compose, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "portz" in done.stderr  # the validation above really runs


def test_service_variants_and_gpu_reservation(compose: dict[str, Any], repo_root: Path) -> None:
    services = compose["services"]
    assert {"googlenet-gpu", "googlenet-cpu", "prometheus", "grafana"} <= set(services)
    targets = {
        s["value"].split(" AS ")[-1]
        for s in DockerfileParser(str(repo_root / "Dockerfile")).structure
        if s["instruction"] == "FROM"
    }
    for variant in ("gpu", "cpu"):
        svc = services[f"googlenet-{variant}"]
        assert svc["profiles"] == [variant]
        assert svc["build"]["args"]["VARIANT"] == variant and svc["build"]["target"] in targets
        assert "googlenet" in svc["networks"]["default"]["aliases"]  # Prometheus's scrape target
        source, mode = mounts(svc)["/models"]
        assert (
            mode == "ro" and Path(source) == repo_root / "model_repository"
        )  # the repository's default path
        settings = Settings(
            **{k.removeprefix("GOOGLENET_").lower(): v for k, v in svc["environment"].items()}
        )
        # compose's default 10 s would SIGKILL a drain in progress
        assert (
            float(svc["stop_grace_period"].rstrip("s"))
            > settings.shutdown_delay_s + settings.shutdown_grace_s
        )
    devices = services["googlenet-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["googlenet-cpu"]


def test_prometheus_and_grafana_are_wired(compose: dict[str, Any], repo_root: Path) -> None:
    services = compose["services"]
    config = yaml.safe_load(
        Path(mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"][0]).read_text()
    )
    targets = {
        t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]
    }
    assert "googlenet:8000" in targets
    grafana = mounts(services["grafana"])
    provisioning = Path(grafana["/etc/grafana/provisioning"][0])
    dashboards = Path(grafana["/var/lib/grafana/dashboards"][0])
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][
        0
    ]
    assert datasource["url"] == "http://prometheus:9090" and datasource["uid"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "googlenet.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (dashboards / "googlenet.json").is_file()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/googlenet.json"
