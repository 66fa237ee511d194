"""The v2 protocol driven by the real clients: tritonclient (HTTP) and Triton's perf_analyzer.

perf_analyzer 2.60 wheels need glibc >= 2.38. On an older system (Debian 12 has 2.36) the setup
below runs it through Debian 13's loader and C/C++ runtime, unpacked into .cache/perf-analyzer
(never installed into the system), and skips with the reason where that cannot be had.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, LiveServer, sample_jpegs

PERF_ANALYZER = "2.60.0"
CACHE = ROOT / ".cache" / "perf-analyzer"
COMPAT_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")  # what the binary needs beyond glibc 2.36
LIBDIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def v1_top1(server: LiveServer, jpeg: bytes, **params: object) -> int:
    response = httpx.post(
        f"{server.url}/v1/classify",
        params=params,
        content=jpeg,
        headers={"content-type": "image/jpeg"},
        timeout=30,
    )
    return response.json()["predictions"][0]["index"]


def test_health_metadata_and_config_through_tritonclient(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny-1", "1")
    assert not client.is_model_ready("missing")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": [-1, 1]}
    config = client.get_model_config("tiny-0-tensor")
    assert config["max_batch_size"] >= 1 and config["input"][0]["data_type"] == "TYPE_UINT8"
    with pytest.raises(triton.InferenceServerException, match="unknown model 'missing'"):
        client.get_model_metadata("missing")


@pytest.mark.parametrize(
    ("model", "crops", "v1_params"),
    [
        ("tiny-0", 1, {}),
        ("tiny", 10, {"crops": 10, "ensemble": "true"}),
    ],
)
def test_real_jpegs_as_bytes_get_the_top1_of_v1_in_binary_and_json(
    server: LiveServer, client: triton.InferenceServerClient, model: str, crops: int, v1_params: dict
) -> None:
    jpegs = [p.read_bytes() for p in sample_jpegs()[:3]]
    expected = [v1_top1(server, j, **v1_params) for j in jpegs]
    binary_in = triton.InferInput("image", [len(jpegs), 1], "BYTES")
    binary_in.set_data_from_numpy(np.array([[j] for j in jpegs], dtype=object))  # length-prefixed binary
    json_in = triton.InferInput("image", [len(jpegs), 1], "BYTES")
    json_in.set_data_from_numpy(
        np.array([[base64.b64encode(j)] for j in jpegs], dtype=object), binary_data=False
    )
    for inputs, binary_out in (([binary_in], True), ([json_in], False)):
        result = client.infer(
            model,
            inputs,
            parameters={"crops": crops},
            request_id="r7",
            outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary_out)],
        )
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(jpegs), 1000) and result.get_response()["id"] == "r7"
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
        assert probabilities.argmax(axis=1).tolist() == expected
    ranked = client.infer(
        model,
        [binary_in],
        parameters={"crops": crops},
        outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
    )
    assert [int(row[0].split(b":")[1]) for row in ranked.as_numpy("probabilities")] == expected


def test_errors_reach_tritonclient_as_messages(client: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("image", [1, 4], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(triton.InferenceServerException, match="is BYTES, got FP32"):
        client.infer("tiny", [wrong])


# --- perf_analyzer --------------------------------------------------------------------------------


def _glibc() -> tuple[int, ...]:
    name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    return tuple(int(p) for p in version.split(".")) if name == "glibc" else (0,)


def _run(cmd: list[str], **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    if proc.returncode != 0:
        pytest.skip(f"perf_analyzer setup failed: {' '.join(cmd[:4])}...: {proc.stderr.strip()[-400:]}")


def _debian_mirror() -> str:
    """The system's own Debian mirror, so the compat packages come from where apt already goes."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = source.read_text(errors="replace") if source.is_file() else ""
        match = re.search(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def _compat_runtime(root: Path) -> Path:
    """Debian 13's glibc, libstdc++ and libgcc unpacked into `root` with a private apt setup."""
    libdir = root / "usr/lib/x86_64-linux-gnu"
    if (libdir / "ld-linux-x86-64.so.2").exists():
        return libdir
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip(f"glibc {'.'.join(map(str, _glibc()))} < 2.38 and no apt-get to fetch a newer runtime")
    apt, debs = root.parent / "apt", root.parent / "debs"
    for d in (
        apt / "etc/apt.conf.d",
        apt / "etc/preferences.d",
        apt / "etc/sources.list.d",
        apt / "state/lists/partial",
        apt / "cache/archives/partial",
        debs,
    ):
        d.mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "etc/sources.list").write_text(f"deb [signed-by={keyring}] {_debian_mirror()} trixie main\n")
    options = [
        f"-o{k}={v}"
        for k, v in {
            "Dir::Etc": apt / "etc",
            "Dir::State": apt / "state",
            "Dir::Cache": apt / "cache",
            "Dir::State::status": "/var/lib/dpkg/status",
            "Debug::NoLocking": "1",
            "APT::Sandbox::User": "root",
        }.items()
    ]
    _run(["apt-get", *options, "update"])
    _run(["apt-get", *options, "download", *COMPAT_PACKAGES], cwd=debs)
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(staging)])
    staging.rename(root)  # only a complete unpack is ever seen as installed
    return libdir


def _install_perf_analyzer() -> list[str]:
    """The command prefix that runs perf_analyzer here, installing it into .cache on first use."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("perf_analyzer wheels are for x86_64 Linux")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once share one install
        binary = CACHE / PERF_ANALYZER / "perf_analyzer/bin/perf_analyzer"
        if not binary.exists():
            target = CACHE / f"{PERF_ANALYZER}.partial"
            shutil.rmtree(target, ignore_errors=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    "manylinux_2_38_x86_64",
                    "--target",
                    str(target),
                    f"perf-analyzer=={PERF_ANALYZER}",
                ]
            )
            target.rename(CACHE / PERF_ANALYZER)
        binary.chmod(0o755)
        if _glibc() >= (2, 38):
            return [str(binary)]
        libdir = _compat_runtime(CACHE / "compat")
    return [
        str(libdir / "ld-linux-x86-64.so.2"),
        "--library-path",
        ":".join([str(libdir), *LIBDIRS]),
        str(binary),
    ]


@pytest.fixture(scope="module")
def perf_analyzer() -> list[str]:
    return _install_perf_analyzer()


def _served_infer_requests(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "googlenet_requests_total"
        and s.labels.get("route") == "/v2/models/{name}/infer"
        and s.labels.get("status") == "200"
    )


def _profile(perf_analyzer: list[str], server: LiveServer, *args: str) -> dict[int, float]:
    """Run perf_analyzer with short windows; its throughput at each concurrency level."""
    # Tests do not judge performance, and other work shares these cores: a loose stability
    # criterion keeps perf_analyzer from giving up on a level (it then skips the higher ones).
    cmd = [*perf_analyzer, "-u", server.url.removeprefix("http://"), "--measurement-interval", "1000"]
    cmd += ["--stability-percentage", "1000", "--max-trials", "5", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    report = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    found = re.findall(r"^Concurrency: (\d+), throughput: ([\d.]+) infer/sec", proc.stdout, re.M)
    throughput = {int(c): float(t) for c, t in found}
    assert throughput and all(t > 0 for t in throughput.values()), report
    return throughput


def test_perf_analyzer_drives_the_ensemble_with_real_jpegs(
    perf_analyzer: list[str], server: LiveServer, tmp_path: Path
) -> None:
    # BYTES in an input-data file: base64 of each element's 4-byte length prefix plus the JPEG
    # (perf_analyzer docs/input_data.md); one entry per image, sent round-robin.
    entries = []
    for path in sample_jpegs()[:8]:
        jpeg = path.read_bytes()
        b64 = base64.b64encode(struct.pack("<I", len(jpeg)) + jpeg).decode()
        entries.append({"image": {"content": {"b64": b64}, "shape": [1]}})
    data = tmp_path / "jpegs.json"
    data.write_text(json.dumps({"data": entries}))
    before = _served_infer_requests(server)
    throughput = _profile(
        perf_analyzer, server, "-m", "tiny", "--input-data", str(data), "--concurrency-range", "1:4"
    )
    assert sorted(throughput) == [1, 2, 3, 4]
    assert _served_infer_requests(server) - before >= 4  # the requests really went through the service


def test_perf_analyzer_drives_the_tensor_form_in_batches(
    perf_analyzer: list[str], server: LiveServer
) -> None:
    throughput = _profile(perf_analyzer, server, "-m", "tiny-0-tensor", "-b", "2", "--concurrency-range", "1")
    assert list(throughput) == [1]
