"""The locustfile runs under real Locust (headless, seconds) against the real test server."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"


def test_locust_sends_the_mix_without_failures(server, tmp_path: Path) -> None:
    locust = Path(sys.executable).with_name("locust")
    binary = str(locust) if locust.exists() else shutil.which("locust")
    if binary is None:
        pytest.skip("Locust is not installed (pip install '.[loadtest]')")
    env = {**os.environ, "LOADTEST_MIX": "1x1:0.8,10x2:0.2"}
    done = subprocess.run(
        [binary, "-f", str(LOCUSTFILE), "--host", server.url, "--headless", "-u", "2", "-r", "2", "-t", "4s",
         "--stop-timeout", "10",
         "--csv", str(tmp_path / "locust"), "--only-summary", "--loglevel", "WARNING"],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["Name"]: r for r in csv.DictReader((tmp_path / "locust_stats.csv").open())}
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert set(rows) <= {"1x1", "10x2", "Aggregated"} and "1x1" in rows
