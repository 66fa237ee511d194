"""`python -m model_export <command>`: summary, train, evaluate, calibrate, export, build-repository, make-dataset."""

from __future__ import annotations

import argparse
import sys

from model_export.model import VARIANTS


def _summary(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=VARIANTS, default="paper")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _make_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="root of the ImageFolder tree to write")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--train-per-class", type=int, default=40)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument(
        "--calibration-per-class", type=int, default=0, help="also a calibration/ split (for `calibrate`)"
    )
    p.add_argument("--seed", type=int, default=0)


def parser() -> argparse.ArgumentParser:
    from model_export import calibrate, evaluate, export, repository, summary, synthetic, train

    top = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    commands = (
        (
            "summary",
            "per-layer shapes, params and multiply-adds next to the paper's Table 1",
            _summary,
            summary.main,
        ),
        ("train", "train with the paper's recipe on an ImageFolder tree", train.add_arguments, train.main),
        (
            "evaluate",
            "Table 3: top-1/top-5 error for 1/10/144 crops and 1..7 models",
            evaluate.add_arguments,
            evaluate.main,
        ),
        (
            "calibrate",
            "stopping thresholds of the adaptive walks, into the repository's adaptive.json",
            calibrate.add_arguments,
            calibrate.main,
        ),
        (
            "export",
            "one model to ONNX (fp32, fp16) with parity checks and model.json",
            export.add_arguments,
            export.main,
        ),
        (
            "build-repository",
            "the service's model repository (7 members)",
            repository.add_arguments,
            repository.main,
        ),
        ("make-dataset", "write a generated ImageFolder dataset of textures", _make_dataset, synthetic.main),
    )
    for name, help_text, add_arguments, run in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(func=run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
