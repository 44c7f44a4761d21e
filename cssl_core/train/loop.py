"""Run one continual stage: epochs of `strategy.observe` + optimiser steps, checkpointed, resumable.

Resume is exact, not approximate: a stage killed at any point and restarted ends with bit-identical weights
(same device, same thread count). Three things make that true:
- every epoch's randomness is re-derived from (seed, epoch): global RNGs, the masking generator and the
  loader (order and augmentations, see `cssl_core.data.loader`); nothing depends on what ran before;
- the checkpoint written after each epoch holds model, optimiser, scheduler, strategy state and step count,
  and the stage restarts at the first unfinished epoch;
- on CPU, deterministic algorithms are enforced for the duration of the stage.
A checkpoint made under a different configuration is refused rather than silently continued; callers that
try several configurations give each its own directory (`cssl_core.train.store`, keyed by
`training_fingerprint` and the caller's inputs). A damaged last checkpoint costs one epoch, not the stage:
see `cssl_core.train.checkpoint.load_latest`.

Progress goes to `callback(epoch, metrics)` after the epoch's checkpoint is on disk: tracking (MLflow, a
progress bar) lives in the caller, and a failing callback cannot cost a finished epoch. Epochs finished
before a crash are not reported again; their metrics are in `TrainResult.history`.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cssl_core.data.loader import set_epoch
from cssl_core.data.seeding import derive_seed
from cssl_core.strategies.base import StageContext, Strategy
from cssl_core.train.checkpoint import LAST, load_latest, rng_state, save_checkpoint, set_rng_state
from cssl_core.train.config import TrainConfig
from cssl_core.train.evaluate import mae_eval_loss
from cssl_core.train.optim import build_optimizer
from cssl_core.train.schedule import warmup_cosine

Callback = Callable[[int, dict[str, float]], None]


class CheckpointMismatch(RuntimeError):
    """The checkpoint directory holds a run with another configuration; resuming it would mix two runs."""


@dataclass
class TrainResult:
    epochs_run: int  # epochs trained by this call
    resumed_from: int | None  # completed epochs found in the checkpoint, None for a fresh start
    global_step: int
    history: list[dict[str, float]] = field(default_factory=list)  # every epoch of the stage, resumed ones too
    checkpoint: Path | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """Enforce deterministic kernels for the stage only, restoring the caller's global setting after."""
    if not enabled:
        yield
        return
    before, before_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # on CUDA some kernels (e.g. scatter backward) have no deterministic variant: warn, don't fail the stage
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def training_fingerprint(
    model: nn.Module, strategy: Strategy, config: TrainConfig, steps_per_epoch: int
) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: model shape, strategy, optimisation, steps per epoch."""
    model_config = getattr(model, "config", None)
    return {
        "train": config.fingerprint(),
        "model": model_config.to_dict() if hasattr(model_config, "to_dict") else type(model).__name__,
        "strategy": strategy.name,
        "strategy_options": {k: v for k, v in sorted(strategy.options.items())},
        "steps_per_epoch": steps_per_epoch,
    }


def _check_fingerprint(saved: dict[str, Any], current: dict[str, Any], directory: Path) -> None:
    if saved == current:
        return
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    raise CheckpointMismatch(
        f"checkpoint in {directory} was made with a different configuration ({', '.join(differing)} differ): "
        "restore the parameters or remove the directory to start this stage afresh"
    )


def train_stage(
    model: nn.Module,
    strategy: Strategy,
    loaders: Mapping[str, DataLoader],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    callback: Callback | None = None,
    *,
    stage_index: int = 0,
    stage_name: str = "stage",
    teacher: nn.Module | None = None,
    replay: Any | None = None,
) -> TrainResult:
    """Train `model` with `strategy` on `loaders["train"]` for `config.epochs`, resuming from `checkpoint_dir`.

    `loaders["val"]` (optional) adds the held-out masked-reconstruction loss to each epoch's metrics.
    Metrics per epoch: "loss/<term>" for every term `observe` returns, "lr", "images_per_s",
    "data_wait_fraction" (time blocked on the loader / epoch time), "epoch_time_s", "val/mae" if a val loader.
    """
    if "train" not in loaders:
        raise KeyError("loaders must contain 'train'")
    train_loader, val_loader = loaders["train"], loaders.get("val")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch < 1:
        raise ValueError("the train loader yields no batch")
    checkpoint_dir = Path(checkpoint_dir)
    device = resolve_device(config.device)
    use_amp = config.amp and device.type == "cuda"

    with deterministic_algorithms(config.deterministic and device.type == "cpu", device):
        model.to(device)
        if teacher is not None:
            teacher.to(device).eval()
        optimizer = build_optimizer(
            [model, *strategy.trainable_modules()], config.lr, config.weight_decay, config.betas
        )
        total_steps = config.epochs * steps_per_epoch
        warmup = min(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
        scheduler = warmup_cosine(optimizer, warmup, total_steps, config.final_lr_ratio)
        fingerprint = training_fingerprint(model, strategy, config, steps_per_epoch)

        start_epoch, global_step, history, resumed_from = 0, 0, [], None
        state = load_latest(checkpoint_dir, map_location=device)
        if state is not None:
            _check_fingerprint(state["fingerprint"], fingerprint, checkpoint_dir)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            strategy.load_state_dict(state["strategy"])
            set_rng_state(state["rng"])
            start_epoch = resumed_from = int(state["epoch"])
            global_step = int(state["global_step"])
            history = list(state["history"])
        else:
            seed_everything(config.seed)

        generator = torch.Generator()
        context = StageContext(
            stage_index=stage_index,
            stage_name=stage_name,
            model=model,
            teacher=teacher,
            replay=replay,
            device=device,
            generator=generator,
        )
        strategy.begin_stage(context)
        last_path = checkpoint_dir / LAST if state is not None and (checkpoint_dir / LAST).is_file() else None
        for epoch in range(start_epoch, config.epochs):
            seed_everything(derive_seed(config.seed, "epoch", epoch))
            generator.manual_seed(derive_seed(config.seed, "mask", epoch))
            context.epoch = epoch
            set_epoch(train_loader, epoch)
            metrics = _run_epoch(model, strategy, train_loader, optimizer, scheduler, config, device, use_amp)
            global_step += steps_per_epoch
            if val_loader is not None:
                metrics["val/mae"] = mae_eval_loss(model, val_loader, device, seed=config.seed, amp=use_amp)
            history.append(metrics)
            last_path = save_checkpoint(
                checkpoint_dir,
                {
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "strategy": strategy.state_dict(),
                    "rng": rng_state(),
                    "config": config.to_dict(),
                    "fingerprint": fingerprint,
                    "history": history,
                },
                keep_epoch=config.keep_epoch_checkpoints,
            )
            if callback is not None:
                callback(epoch, dict(metrics))
        strategy.end_stage(context)

    return TrainResult(
        epochs_run=config.epochs - start_epoch,
        resumed_from=resumed_from,
        global_step=global_step,
        history=history,
        checkpoint=last_path,
    )


def _run_epoch(
    model: nn.Module,
    strategy: Strategy,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    device: torch.device,
    use_amp: bool,
) -> dict[str, float]:
    model.train()
    sums: dict[str, torch.Tensor] = {}
    n_steps = n_images = 0
    waited = 0.0
    lr = optimizer.param_groups[0]["lr"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
    start = time.perf_counter()
    batches = iter(loader)
    while True:
        before = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - before
        if batch is None:
            break
        batch = _to_device(batch, device)
        with autocast:
            losses = strategy.observe(batch)
        if "total" not in losses:
            raise KeyError(f"strategy {strategy.name!r} returned {sorted(losses)} without 'total'")
        total = losses["total"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], config.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        for name, value in losses.items():
            value = value.detach().float()
            sums[name] = sums[name] + value if name in sums else value
        n_steps += 1
        n_images += int(batch["image"].shape[0])
    elapsed = time.perf_counter() - start
    metrics = {f"loss/{name}": float(value) / n_steps for name, value in sums.items()}
    if not math.isfinite(metrics["loss/total"]):
        raise FloatingPointError(f"non-finite mean loss {metrics['loss/total']}: lower lr or check the inputs")
    metrics.update(
        {
            "lr": float(lr),
            "images_per_s": n_images / elapsed,
            "data_wait_fraction": waited / elapsed,
            "epoch_time_s": elapsed,
        }
    )
    return metrics
