"""Imports point one way (design.md 4): api -> classifier/scheduling -> batching -> runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVICE = ROOT / "service"


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(SERVICE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_service_never_imports_torch_or_model_export(path: Path) -> None:
    assert not {n for n in imports(path) if n.split(".")[0] in ("torch", "torchvision", "model_export")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_api_layer_and_the_app_factory_import_the_web_framework(path: Path) -> None:
    web = {n for n in imports(path) if n.split(".")[0] in ("fastapi", "starlette", "uvicorn", "grpc", "tritonclient")}
    allowed = path.parent.name == "api" or path.name in ("app.py", "__main__.py", "lifecycle.py")
    assert allowed or not web, web


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("batching.py", {"service.runtime", "service.scheduling", "service.classifier", "service.api"}),
        ("runtime.py", {"service.batching", "service.scheduling", "service.classifier", "service.api"}),
        ("scheduling.py", {"service.runtime", "service.classifier", "service.api"}),
        ("classifier.py", {"service.runtime", "service.api"}),
        ("preprocess.py", {"service.runtime", "service.batching", "service.api"}),
        ("crops.py", {"service"}),
        ("errors.py", {"service"}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(module: str, forbidden: set[str]) -> None:
    found = {n for n in imports(SERVICE / module) for f in forbidden if n == f or n.startswith(f + ".")}
    assert not found, found
