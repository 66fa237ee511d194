"""Imports point one way (docs/architecture.md 4): api -> classifier/scheduling -> batching -> runtime."""

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
    allowed = path.relative_to(SERVICE).parts[0] == "api" or path.name in ("app.py", "__main__.py", "lifecycle.py")
    assert allowed or not web, web


# The request path, top to bottom (docs/architecture.md); a module imports only from layers below
# its own. A package (api, batching) is one unit.
LAYERS = [
    {"__main__"},
    {"app", "lifecycle"},
    {"api"},
    {"serving"},
    {"classifier"},
    {"adaptive"},
    {"ladder", "batching"},
    {"runtime", "preprocess", "postprocess", "repository", "gpu"},
    {"admission", "cuda", "decode_cost"},
    {"crops", "settings", "metrics", "logs", "image_structure"},
    {"contract", "errors", "stopping"},
]
# Inside the batching package: the ensemble and the device drive the queues, the queues use the cut.
BATCHING = [{"__init__"}, {"ensemble", "device"}, {"queue"}, {"fair_cut"}]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str:
    """`service.api.v2` -> `api`; `service.batching.queue` -> `batching`; `service.crops` -> `crops`."""
    return module.split(".")[1]


def _internal(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "service":
            found |= {f"service.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("service.")}
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path: Path) -> None:
    unit = path.relative_to(SERVICE).parts[0].removesuffix(".py")
    if unit == "__init__":
        return
    assert unit in RANK, f"{unit} is in no layer of LAYERS: place it"
    upward = {m for m in _internal(path) if _unit(m) != unit and RANK[_unit(m)] <= RANK[unit]}
    assert not upward, f"{unit} imports {upward} from its own layer or above"


@pytest.mark.parametrize("path", sorted((SERVICE / "batching").glob("*.py")), ids=lambda p: p.name)
def test_inside_the_batching_package_imports_point_one_way(path: Path) -> None:
    rank = {name: r for r, layer in enumerate(BATCHING) for name in layer}
    mine = rank[path.stem]
    inside = {m.split(".")[2] for m in _internal(path) if m.startswith("service.batching.")}
    assert not {m for m in inside if rank[m] <= mine}, f"{path.stem} imports {inside} from its level or above"


def test_the_api_reaches_the_classifier_through_the_serving_object_not_app_state() -> None:
    handlers = [p for p in (SERVICE / "api").rglob("*.py") if "app.state" in p.read_text()]
    assert [p.name for p in handlers] == ["deps.py", "health.py"]  # the dependency, and the probe's 503
    assert "service.serving" in imports(SERVICE / "api" / "deps.py")
    assert "service.classifier" in imports(SERVICE / "serving.py")
