"""`build-repository`: the service's model repository (labels, ensemble, members); docs/model-repository.md.

python -m model_export build-repository --if-missing                  # seeded random init: UNTRAINED
python -m model_export build-repository --checkpoints runs/g*/checkpoint.pt
python -m model_export build-repository --torchvision-weights googlenet-1378be20.pth
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from model_export import export
from model_export.onnx_graph import Exporter
from service.contract import (
    CLASSES,
    ContractError,
    Label,
    format_labels,
    imagenet_labels,
    parse_labels,
    sha256_of,
)

ENSEMBLE = "googlenet"
MEMBERS = 7  # the paper's ensemble (section 7, Table 3)
# "one of them wider" (section 7) without a figure; 1.25 keeps it within the CPU budget (~1.5x MACs).
WIDER_MEMBER, WIDER_WIDTH = 6, 1.25


def member_name(i: int) -> str:
    return f"{ENSEMBLE}-{i}"


def read_labels(path: str | Path) -> list[Label]:
    """A user's labels.tsv (--labels), checked against the contract before anything is written."""
    try:
        return parse_labels(Path(path).read_text(encoding="utf-8"), source=str(path))
    except ContractError as exc:
        raise ValueError(str(exc)) from None


def problems(root: str | Path) -> list[str]:
    """Why `root` is not a complete repository (empty list: it is). Hashes every listed file."""
    root = Path(root)
    try:
        ensemble = json.loads((root / "ensemble.json").read_text())
        found = [line for line in (root / "labels.tsv").read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError) as exc:
        return [f"{root}: {exc}"]
    issues = [] if len(found) == CLASSES else [f"labels.tsv has {len(found)} rows"]
    if ensemble.get("primary") not in ensemble.get("members", []):
        issues.append("ensemble.json: primary is not a member")
    for name in ensemble.get("members", []):
        try:
            record = json.loads((root / name / "model.json").read_text())
        except (OSError, ValueError) as exc:
            issues.append(f"{name}: {exc}")
            continue
        if not any(info["precision"] == "fp32" for info in record["files"].values()):
            issues.append(f"{name}: no fp32 file")
        for relative, info in record["files"].items():
            path = root / name / relative
            if not path.is_file() or sha256_of(path) != info["sha256"]:
                issues.append(f"{name}/{relative}: missing or sha256 mismatch")
    return issues


def build(
    output: str | Path,
    *,
    checkpoints: list[str] = (),
    torchvision_weights: str | None = None,
    members: int | None = None,
    precisions: tuple[str, ...] = export.PRECISIONS,
    labels: str | None = None,
    seed: int = 0,
    parity_images: str | None = None,
    parity_count: int = 8,
) -> list[dict[str, Any]]:
    """Write the repository to a temporary folder next to `output`, then swap it in (the service may be
    reading the old one). Sources, in member order: torchvision weights, checkpoints; with neither,
    `members` seeded random-init paper-variant models, member 6 the wider one."""
    sources: list[tuple[str, Any]] = [("torchvision", torchvision_weights)] if torchvision_weights else []
    sources += [("checkpoint", c) for c in checkpoints]
    if sources and members not in (None, len(sources)):
        raise ValueError(f"--members {members} but {len(sources)} weight sources were given")
    if not sources:
        sources = [("seed", i) for i in range(MEMBERS if members is None else members)]
    if not 1 <= len(sources) <= 16:
        raise ValueError(f"a repository holds 1..16 members, got {len(sources)}")
    rows = read_labels(labels) if labels else imagenet_labels()

    output = Path(output)
    if output.exists() and any(output.iterdir()) and not (output / "ensemble.json").exists():
        raise FileExistsError(f"{output} exists and is not a model repository: not overwriting it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the service often runs as another user
    try:
        (staging / "labels.tsv").write_text(format_labels(rows), encoding="utf-8")
        names = [member_name(i) for i in range(len(sources))]
        (staging / "ensemble.json").write_text(
            json.dumps({"name": ENSEMBLE, "members": names, "primary": names[0]}, indent=2) + "\n"
        )
        images = export.parity_images(parity_count, parity_images)
        exporter = Exporter()  # one trace per architecture (onnx_graph.Exporter)
        records = []
        for i, (kind, source) in enumerate(sources):
            if kind == "torchvision":
                model, weights, trained = export.from_torchvision(source)
            elif kind == "checkpoint":
                model, weights, trained = export.from_checkpoint(source)
            else:
                width = WIDER_WIDTH if i == WIDER_MEMBER else 1.0
                model, weights, trained = export.from_seed("paper", width, seed + i)
            if model.config.num_classes != CLASSES:
                raise ValueError(
                    f"{source}: {model.config.num_classes} classes, the repository needs {CLASSES}"
                )
            records.append(
                export.write_member(
                    staging,
                    names[i],
                    model,
                    weights=weights,
                    trained=trained,
                    precisions=precisions,
                    images=images,
                    exporter=exporter,
                )
            )
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return records


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="model_repository", help="repository root (default: model_repository)")
    p.add_argument(
        "--if-missing", action="store_true", help="do nothing if a valid repository is there already"
    )
    p.add_argument(
        "--checkpoints", nargs="+", default=[], help="checkpoint.pt files from `train`, one per member"
    )
    p.add_argument("--torchvision-weights", help="local googlenet-1378be20.pth: member 0 (never downloaded)")
    p.add_argument(
        "--members", type=int, help=f"random-init members (default {MEMBERS}); else one per source"
    )
    p.add_argument("--precision", default="fp32,fp16", help="comma-separated: fp32, fp16 (default both)")
    p.add_argument(
        "--labels", help="index<TAB>wnid<TAB>name, 1000 rows (default: the ILSVRC-2012 wnids and names)"
    )
    p.add_argument("--seed", type=int, default=0, help="random-init member i uses seed + i")
    p.add_argument(
        "--parity-images",
        help="images for the parity checks (default: ../shared/data samples, else generated)",
    )
    p.add_argument("--parity-count", type=int, default=8, help="images per parity check")


def main(args: argparse.Namespace) -> None:
    if args.if_missing and not problems(args.output):
        print(f"{args.output}: a valid repository is there already (--if-missing): nothing to do")
        return
    started = time.perf_counter()
    records = build(
        args.output,
        checkpoints=args.checkpoints,
        torchvision_weights=args.torchvision_weights,
        members=args.members,
        precisions=export.parse_precisions(args.precision),
        labels=args.labels,
        seed=args.seed,
        parity_images=args.parity_images,
        parity_count=args.parity_count,
    )
    for r in records:
        worst = max(f["parity"]["max_abs_diff"] for f in r["files"].values() if f["precision"] == "fp32")
        print(
            f"  {r['name']}: {r['architecture']} x{r['width_multiplier']:g}, {r['weights']['source']}, "
            f"trained={str(r['trained']).lower()}, files {', '.join(r['files'])}, fp32 max |dp| {worst:.1e}"
        )
    untrained = [r["name"] for r in records if not r["trained"]]
    if untrained:
        bar = "!" * 78
        print(
            f'{bar}\n  UNTRAINED: {", ".join(untrained)} hold seeded RANDOM weights ("trained": false in\n'
            f"  model.json). The service runs, but its predictions mean nothing.\n{bar}"
        )
    print(f"wrote {args.output} ({len(records)} members) in {time.perf_counter() - started:.1f} s")
