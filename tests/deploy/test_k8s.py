"""Kubernetes manifests: each overlay rendered by kustomize (kubectl kustomize) and validated against the
API schemas (kubernetes-validate, strict); probes, ports, GPU, grace period and HPA wiring checked."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.conftest import LiveServer

K8S_VERSION = "1.30"


def render(kubectl: str, folder: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout)}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_overlay_renders_to_valid_resources(
    kubectl: str, repo_root: Path, overlay: str, server: LiveServer
) -> None:
    docs = render(kubectl, repo_root / "deploy" / "k8s" / "overlays" / overlay)
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any schema error
    # the validator bites: an unknown field fails strict validation
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)

    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    Settings(
        **{k.removeprefix("GOOGLENET_").lower(): v for k, v in env.items()}
    )  # every variable is a real setting
    limits = container["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (overlay == "gpu")
    assert env["GOOGLENET_PROVIDERS"] == ("cuda" if overlay == "gpu" else "cpu")
    assert container["image"] == f"googlenet-serving:{overlay}-with-models"
    # SIGTERM must be able to run its whole course before the kubelet's SIGKILL
    assert pod["terminationGracePeriodSeconds"] > (
        float(env["GOOGLENET_SHUTDOWN_DELAY_S"]) + float(env["GOOGLENET_SHUTDOWN_GRACE_S"])
    )
    assert pod["securityContext"]["runAsNonRoot"] is True

    # probes and ports point at what the service really serves
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    probes = [container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert probes == ["/readyz", "/readyz", "/healthz"]
    for path in {*probes, annotations["prometheus.io/path"]}:  # a real server answers them
        assert httpx.get(server.url + path, timeout=10).status_code == 200, path
    port = container["ports"][0]
    assert port["containerPort"] == int(env["GOOGLENET_PORT"])
    assert (
        annotations["prometheus.io/port"] == env["GOOGLENET_PORT"]
        and annotations["prometheus.io/path"] == "/metrics"
    )
    service = docs["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == port["name"]
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()

    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]


def test_hpa_metric_is_served_by_the_adapter_rule(kubectl: str, repo_root: Path) -> None:
    hpa = render(kubectl, repo_root / "deploy" / "k8s" / "base")["HorizontalPodAutoscaler"]["spec"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    values = yaml.safe_load(
        (repo_root / "deploy" / "k8s" / "monitoring" / "prometheus-adapter-values.yaml").read_text()
    )
    names = {rule["name"]["as"] for rule in values["rules"]["custom"]}
    assert metric["pods"]["metric"]["name"] in names


def test_service_monitor_selects_the_service(kubectl: str, repo_root: Path) -> None:
    monitor = render(kubectl, repo_root / "deploy" / "k8s" / "monitoring")["ServiceMonitor"]
    # a CRD: kubernetes-validate has no schema for it, so check what the operator relies on
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, K8S_VERSION, strict=True)
    service = render(kubectl, repo_root / "deploy" / "k8s" / "base")["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert (
        endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    )
