"""Reads the model repository that model_export writes (docs/architecture.md 3.1): members, versions, labels.

The file format is the contract of service/contract.py, which model_export writes; see
docs/model-repository.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import stopping
from service.contract import ContractError, Label, parse_labels, sha256_of
from service.stopping import StoppingRule


class RepositoryError(Exception):
    """The repository cannot be served: missing, malformed, or a file that fails its checksum."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: int
    path: Path  # the ONNX file to serve
    precision: str
    sha256: str
    metadata: dict[str, Any]

    @property
    def trained(self) -> bool:
        return bool(self.metadata.get("trained", False))


@dataclass(frozen=True)
class Repository:
    root: Path
    name: str
    members: list[ModelEntry]  # ensemble order; members[0] is the primary
    labels: list[Label]
    stopping: StoppingRule = field(default_factory=StoppingRule)  # adaptive.json, or the defaults


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RepositoryError(f"missing {path.name} in the model repository") from None
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise RepositoryError(f"{path.name} must hold a JSON object")
    return data


def read_labels(path: Path) -> list[Label]:
    try:
        return parse_labels(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RepositoryError(f"cannot read labels.tsv: {exc}") from None
    except ContractError as exc:
        raise RepositoryError(str(exc)) from None


def _entry(root: Path, name: str, precision: str) -> ModelEntry:
    folder = root / name
    if not folder.is_dir() or folder.resolve().parent != root.resolve():
        raise RepositoryError(f"model folder {name!r} is missing")
    metadata = _read_json(folder / "model.json")
    versions = sorted((int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    if not versions:
        raise RepositoryError(f"model {name!r} has no version folder")
    version = versions[0]  # the highest version is served (docs/architecture.md 3.1)
    files = metadata.get("files", {})
    wanted = [f"{version}/model.fp16.onnx"] if precision == "fp16" else []
    for rel in [*wanted, f"{version}/model.onnx"]:
        path = folder / rel
        if path.is_file():
            break
    else:
        raise RepositoryError(f"model {name!r} version {version} has no model.onnx")
    listed = files.get(rel, {}).get("sha256")
    actual = sha256_of(path)
    if listed and listed != actual:
        raise RepositoryError(f"model {name!r} file {rel} fails its sha256 check (corrupt or replaced)")
    file_precision = files.get(rel, {}).get("precision", "fp16" if rel.endswith("fp16.onnx") else "fp32")
    return ModelEntry(name, version, path, file_precision, actual, metadata)


def load_repository(root: Path, *, precision: str = "fp32", limit: int | None = None) -> Repository:
    """Read and check the repository; `precision` fp16 prefers fp16 files where they exist."""
    if not root.is_dir():
        raise RepositoryError(f"no model repository at {root} (build one: python -m model_export build-repository)")
    ensemble = _read_json(root / "ensemble.json")
    names = ensemble.get("members")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RepositoryError("ensemble.json must list its members")
    primary = ensemble.get("primary", names[0])
    if primary in names:  # the primary is served first: it answers single-model requests
        names = [primary, *[n for n in names if n != primary]]
    members = [_entry(root, n, precision) for n in names[:limit]]
    try:
        rule = stopping.read(root)
    except ValueError as exc:
        raise RepositoryError(str(exc)) from None
    name = str(ensemble.get("name", "googlenet"))
    return Repository(root, name, members, read_labels(root / "labels.tsv"), rule)
