"""`train`: the paper's recipe on an ImageFolder tree (train/, val/); resumable checkpoints, metrics, plot.

    python -m model_export train --data /data/imagenet --out-dir runs/googlenet-0 --seed 0
    python -m model_export train --data /data/imagenet --out-dir runs/googlenet-0 --seed 0 --resume
    python -m model_export train --data runs/shapes --out-dir runs/tiny --variant torchvision --width 0.125

Writes out_dir/checkpoint.pt (every epoch), out_dir/metrics.jsonl (one line per epoch) and
out_dir/metrics.png. Epoch e draws its shuffle, crops and dropout from seed (seed, e) alone, so a
resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model_export import checkpoint, recipe
from model_export.data import image_folder
from model_export.model import VARIANTS, GoogLeNetConfig, build
from model_export.plot import plot_history


def add_arguments(p: argparse.ArgumentParser) -> None:
    # ---- config: every default in one place; BVLC's values where the paper gives none (docs/googlenet.md 3)
    p.add_argument("--data", required=True, help="ImageFolder root holding train/ and val/")
    p.add_argument("--out-dir", default="runs/googlenet", help="checkpoint, metrics and plot go here")
    p.add_argument("--variant", choices=VARIANTS, default="paper", help="network (model.py)")
    p.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier (1.25: the ensemble's wider member)"
    )
    p.add_argument(
        "--num-classes", type=int, default=1000, help="classifier outputs; 1000 fits the repository"
    )
    p.add_argument("--epochs", type=int, default=60, help="BVLC quick_solver: 60 epochs")
    p.add_argument("--batch-size", type=int, default=32, help="BVLC: 32")
    p.add_argument("--lr", type=float, default=0.01, help="base learning rate (BVLC: 0.01)")
    p.add_argument(
        "--lr-step-epochs", type=int, default=recipe.LR_STEP_EPOCHS, help="x0.96 every N epochs (paper: 8)"
    )
    p.add_argument("--weight-decay", type=float, default=2e-4, help="on weights, not biases (BVLC: 2e-4)")
    p.add_argument(
        "--averaging", choices=("ema", "mean"), default="ema", help="Polyak averaging (recipe.polyak)"
    )
    p.add_argument("--ema-decay", type=float, default=0.999, help="final decay of the 'ema' averaging")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data loader processes")
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:1 ..."
    )
    p.add_argument("--no-amp", action="store_true", help="disable float16 autocast (only used on CUDA)")
    p.add_argument("--seed", type=int, default=0, help="every random draw of the run (order, crops, dropout)")
    p.add_argument(
        "--init-seed",
        type=int,
        help="initial weights (default: --seed); the paper's ensemble "
        "shares one init and differs in sampling (section 7)",
    )
    p.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def validate(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: bool) -> dict[str, float]:
    model.eval()
    total, loss_sum, top1, top5 = 0, 0.0, 0, 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            logits = model(images).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (best[:, 0] == targets).sum().item()
            top5 += (best == targets[:, None]).any(dim=1).sum().item()
            total += len(targets)
    return {"val_loss": loss_sum / total, "val_top1": top1 / total, "val_top5": top5 / total}


def main(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    amp = device.type == "cuda" and not args.no_amp
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # narrow nets hit denormals early on: ~10x slower steps without this

    # ---- data
    train_set = image_folder(args.data, "train", train=True)
    val_set = image_folder(args.data, "val", train=False)
    if train_set.classes != val_set.classes or len(train_set.classes) > args.num_classes:
        raise ValueError(
            f"train/ and val/ must hold the same classes, at most --num-classes={args.num_classes}"
        )
    loader_kwargs = {
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "pin_memory": device.type == "cuda",
    }
    val_loader = DataLoader(val_set, shuffle=False, **loader_kwargs)

    # ---- model, optimizer, schedule, averaging
    config = GoogLeNetConfig(
        variant=args.variant, width=args.width, num_classes=args.num_classes, aux_logits=True
    )
    model = build(config, seed=args.seed if args.init_seed is None else args.init_seed).to(device)
    opt = recipe.optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    schedule = recipe.lr_schedule(opt, step_epochs=args.lr_step_epochs)
    averaged = recipe.polyak(model, kind=args.averaging, decay=args.ema_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch, history = 0, []
    ckpt_path = out_dir / "checkpoint.pt"
    if args.resume:
        state = checkpoint.load(ckpt_path, map_location=device)
        if state["config"] != config.to_dict():
            raise ValueError(f"{ckpt_path} was trained with {state['config']}, not {config.to_dict()}")
        model.load_state_dict(state["model"])
        averaged.module.load_state_dict(state["averaged_model"])
        averaged.n_averaged.fill_(state["n_averaged"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"resumed {ckpt_path} after epoch {start_epoch}")

    # ---- train
    for epoch in range(start_epoch, args.epochs):
        torch.manual_seed(args.seed * 1_000_003 + epoch)  # the epoch's draws depend on (seed, epoch) only
        loader = DataLoader(train_set, shuffle=True, **loader_kwargs)
        lr = opt.param_groups[0]["lr"]
        model.train()
        started, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, disable=args.no_progress)
        for images, targets in bar:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                outputs = model(images)
                loss = recipe.loss(outputs, targets)  # main + 0.3 x (aux1 + aux2)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            averaged.update_parameters(model)  # Polyak averaging after every step
            seen += len(targets)
            loss_sum += loss.item() * len(targets)
            correct += (outputs.logits.argmax(1) == targets).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.4g}")
        schedule.step()

        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_top1": correct / seen}
        row |= validate(averaged.module, val_loader, device, amp)
        row["seconds"] = round(time.perf_counter() - started, 2)
        history.append(row)
        print(json.dumps(row))
        checkpoint.save(
            {
                "config": config.to_dict(),
                "model": model.state_dict(),
                "averaged_model": averaged.module.state_dict(),  # what export and evaluate use
                "n_averaged": int(averaged.n_averaged),
                "optimizer": opt.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "classes": train_set.classes,
                "args": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"
                },
                "recipe": {
                    "momentum": recipe.MOMENTUM,
                    "lr_gamma": recipe.LR_GAMMA,
                    "aux_weight": recipe.AUX_WEIGHT,
                    "averaging": args.averaging,
                    "crop_area": [0.08, 1.0],
                    "crop_aspect": [0.75, 4 / 3],
                    "photometric": "howard+lighting",
                    "interpolation": "random",
                },
                "dataset": Path(args.data).resolve().name,  # a name, not a path of this machine
            },
            ckpt_path,
        )
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        plot_history(
            history,
            out_dir / "metrics.png",
            title=f"GoogLeNet {args.variant} x{args.width:g}, seed {args.seed}",
        )
    return history[-1] if history else {}
