"""The settings object: environment variables, flags, validation at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

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
