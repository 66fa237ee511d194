"""The README stays true: its two commands come first and its table lists every setting."""

from __future__ import annotations

from service.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_run_and_test_commands() -> None:
    first_block = README.split("```")[1]
    assert "scripts/serve" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"| `{name}` | `GOOGLENET_{name.upper()}` |" in README, name
