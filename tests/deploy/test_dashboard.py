"""The Grafana dashboard and the Prometheus config against the real service: every queried metric is
one the service exports (a real scrape after traffic), and every panel query and the HPA adapter rule run
on a real Prometheus (Debian's) that scraped the real server, returning data (GPU: absent here)."""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service import gpu
from tests.conftest import LiveServer, make_image, serve, wait_ready

JPEG = {"content-type": "image/jpeg"}
RATE = "10s"  # $__rate_interval for a 1 s scrape interval


def load_preview(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("preview", repo_root / "deploy" / "grafana" / "preview.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def traffic(live: LiveServer) -> None:
    with live.client() as client:
        for seed in range(2):
            assert (
                client.post(
                    "/v1/classify",
                    params={"crops": 10, "ensemble": True},
                    content=make_image(seed=seed),
                    headers=JPEG,
                ).status_code
                == 200
            )
            assert client.post("/v1/classify", content=make_image(seed=seed), headers=JPEG).status_code == 200
            auto = client.post("/v1/classify", params={"crops": "auto"}, content=make_image(seed=seed), headers=JPEG)
            assert auto.status_code == 200  # the auto-choice panel's series
            walk = client.post(  # the adaptive panels' series: a walk per image, and one asked anytime
                "/v1/classify", params={"crops": "adaptive", "ensemble": "adaptive"}, content=make_image(seed=seed),
                headers=JPEG,
            )
            assert walk.status_code == 200 and walk.json()["adaptive"]
            anytime = client.post("/v1/classify", params={"crops": 10, "partial": "true", "deadline_ms": 30_000},
                                  content=make_image(seed=seed), headers=JPEG)
            assert anytime.status_code == 200
        assert (  # a deadline no device could meet: refused at once (422), a rejection series
            client.post("/v1/classify", params={"deadline_ms": 0.001}, content=make_image(), headers=JPEG).status_code
            == 422
        )
        assert (
            client.post("/v1/classify", params={"crops": 3}, content=make_image(), headers=JPEG).status_code
            == 400
        )


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_batch_size=4, instances=1, max_queue_rows=64) as server:
        yield server


def test_dashboard_queries_only_metrics_the_service_exports(live: LiveServer, repo_root: Path) -> None:
    traffic(live)
    exported = {f.name for f in text_string_to_metric_families(httpx.get(f"{live.url}/metrics").text)}
    dashboard = load_preview(repo_root).load_dashboard()
    queried = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for expr in dashboard_exprs(dashboard)
        for name in re.findall(r"\bgooglenet_\w+", expr)
    }
    # GPU gauges exist only where NVML sees a device (service/gpu.py): checked against its own names
    assert queried - exported <= set(gpu.METRIC_NAMES)
    assert set(gpu.METRIC_NAMES) <= queried  # the dashboard has its GPU panels
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "latency", "queue", "batch", "rejections", "gpu", "adaptive"):
        assert topic in titles
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]} == {"${datasource}"}


def test_promtool_accepts_the_scrape_config(prometheus_bin: Path, repo_root: Path) -> None:
    done = subprocess.run(
        [
            str(prometheus_bin / "promtool"),
            "check",
            "config",
            str(repo_root / "deploy" / "prometheus" / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: Path, live: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping the live server every second, on a free loopback port."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "googlenet", "static_configs": [{"targets": [live.url.removeprefix("http://")]}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(prometheus_bin / "prometheus"),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", proc, timeout_s=30, log=folder / "prometheus.log")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def test_every_panel_query_returns_data_on_a_real_prometheus(
    prometheus: str, live: LiveServer, repo_root: Path, tmp_path: Path
) -> None:
    # traffic across several scrapes, until every series has 3 samples inside the rate window: rate()
    # needs two, and a fast machine sends all its rounds within one scrape interval (bounded: 30 s)
    deadline = time.monotonic() + 30
    scraped = f'min(count_over_time(googlenet_requests_total{{route="/v1/classify"}}[{RATE}]))'
    while True:
        traffic(live)
        samples = instant(prometheus, scraped)
        if samples and float(samples[0]["value"][1]) >= 3:
            break
        assert time.monotonic() < deadline, "Prometheus did not scrape the traffic three times"
    traffic(live)
    served = sum(
        s.value
        for f in text_string_to_metric_families(httpx.get(f"{live.url}/metrics").text)
        for s in f.samples
        if s.name == "googlenet_rejections_total"
    )
    while True:  # until Prometheus has scraped the last round (its rejections): bounded by the deadline
        seen = instant(prometheus, "sum(googlenet_rejections_total)")
        if seen and float(seen[0]["value"][1]) >= served:
            break
        assert time.monotonic() < deadline + 10, "Prometheus did not scrape the last traffic"
    preview = load_preview(repo_root)
    dashboard = preview.load_dashboard()
    for expr in dashboard_exprs(dashboard):
        result = instant(prometheus, preview.expand(expr, RATE))
        if any(name in expr for name in gpu.METRIC_NAMES):
            assert result == [], f"GPU series without a GPU: {expr}"
        else:
            assert result, f"no data for {expr}"
    for mode in ("adaptive", "anytime"):  # 0/0 and idle counters give series too: these must be real
        (walks,) = instant(prometheus, f'sum(googlenet_walk_evaluated_rows_count{{mode="{mode}"}})')
        assert float(walks["value"][1]) > 0, mode

    # the HPA's custom metric, as prometheus-adapter would query it for this pod
    values = yaml.safe_load((repo_root / "deploy/k8s/monitoring/prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    series = rule["seriesQuery"].split("{")[0]
    assert instant(prometheus, series)
    query = (
        rule["metricsQuery"]
        .replace("<<.LabelMatchers>>", 'job="googlenet"')
        .replace("<<.GroupBy>>", "instance")
    )
    (wait,) = instant(prometheus, query)
    assert float(wait["value"][1]) >= 0

    # and the preview renders these same queries (docs/dashboard.png is made this way)
    end = time.time()
    png = preview.render(prometheus, tmp_path / "dashboard.png", start=end - 60, end=end, rate_interval=RATE)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
