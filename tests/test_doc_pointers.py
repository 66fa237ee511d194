"""Every pointer in the repository leads somewhere a reader of the repository can follow: files it
names exist, relative Markdown links resolve, numbered sections of docs/architecture.md and
docs/googlenet.md exist, and nothing points to documents outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

TEXT = re.compile(r"\.(py|md|toml|ya?ml|sh|cfg|ini|html|js|css)$|(^|/)(Dockerfile|Makefile)$")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.split() if TEXT.search(name) and (ROOT / name).is_file()]


FILES = _tracked() if (ROOT / ".git").exists() else []
# Spelled in pieces so this file does not name what it forbids.
OUTSIDE = [re.compile(p) for p in (
    r"\b" + "design" + r"\.md\b",
    "googlenet" + "-spec",
    "serving" + "-anchors",
    "style" + "-anchors",
    "gpu-first" + "-contact",
    r"\.\./shared/(?!data\b)",
    r"\b[Ii]ssues? " + r"#?\d+\b",
)]
DOC_REF = re.compile(r"(?<![\w/.-])((?:docs|deploy|loadtest|service|model_export|tests|scripts)/[\w./-]*\w)")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
SECTION = re.compile(r"\b(?:docs/)?(architecture|googlenet)\.md\)? (\d+)(?:\.(\d+))?")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_nothing_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(errors="replace")
    found = [m.group(0) for pattern in OUTSIDE for m in pattern.finditer(text)]
    assert not found, found


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_the_files_it_names_exist(path: Path) -> None:
    text = path.read_text(errors="replace")
    missing = []
    for ref in DOC_REF.findall(text):
        ref = ref.rstrip(".")
        # Globs and placeholders (docs/benchmarks/*.png, runs/<label>) name patterns, not files.
        if any(c in ref for c in "*<{") or (ROOT / ref).exists() or (path.parent / ref).exists():
            continue
        missing.append(ref)
    if path.suffix == ".md":
        for target, _ in MD_LINK.findall(text):
            if "://" not in target and not target.startswith("mailto:") and not (path.parent / target).exists():
                missing.append(target)
    assert not missing, missing


def _sections(doc: str) -> set[tuple[str, str | None]]:
    heads = re.findall(r"^#{2,3} (\d+)(?:\.(\d+))?[. ]", (ROOT / "docs" / f"{doc}.md").read_text(), re.M)
    return {(a, b or None) for a, b in heads} | {(a, None) for a, _ in heads}


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_numbered_sections_it_names_exist(path: Path) -> None:
    text = path.read_text(errors="replace")
    known = {doc: _sections(doc) for doc in ("architecture", "googlenet")}
    missing = [m.group(0) for m in SECTION.finditer(text) if (m.group(2), m.group(3)) not in known[m.group(1)]]
    assert not missing, missing
