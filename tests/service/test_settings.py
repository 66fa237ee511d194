"""The settings object: environment variables, flags, validation at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service import settings as settings_module
from service.__main__ import parse_args
from service.settings import Settings
from tests.conftest import ROOT


def test_environment_variables_use_one_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLENET_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("GOOGLENET_PROVIDERS", "cpu")
    settings = Settings()
    assert settings.max_batch_size == 16 and settings.providers == "cpu"


def test_flags_override_and_are_validated() -> None:
    settings = Settings(**parse_args(["--port", "9001", "--max-queue-rows", "64", "--cuda-graphs"]))
    assert settings.port == 9001 and settings.max_queue_rows == 64 and settings.cuda_graphs is True
    for bad in ({"providers": "tpu"}, {"max_queue_rows": 0}, {"max_batch_size": 100, "max_queue_rows": 10},
                {"max_inflight_body_bytes": 1000, "max_body_bytes": 2000}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_start_without_a_repository_fails_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--model-repository", str(tmp_path / "none"), "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode != 0
    assert "build-repository" in result.stderr


def test_invalid_settings_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--providers", "tpu"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 2 and "providers" in result.stderr


def test_the_cgroup_cpu_quota_caps_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # cgroup v2: 2 CPUs
    assert settings_module.cgroup_cpu_quota(tmp_path) == 2.0
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert settings_module.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")  # cgroup v1: 1.5 CPUs
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert settings_module.cgroup_cpu_quota(tmp_path) == 1.5
    monkeypatch.setattr(settings_module, "cgroup_cpu_quota", lambda: 1.5)
    assert Settings().cpu_count == min(2, len(os.sched_getaffinity(0)))  # ceil(1.5), never over the affinity
