"""Run one continual stage: epochs of `strategy.observe` + optimiser steps, checkpointed, resumable.

Resume is exact, not approximate: a stage killed at any point and restarted ends with bit-identical weights
(same device, same thread count). Three things make that true:
- every epoch's randomness is re-derived from (seed, epoch): global RNGs, the masking generator and the
  loader (order and augmentations, see `cssl_core.data.loader`); nothing depends on what ran before;
- the checkpoint written after each epoch holds model, optimiser, scheduler, strategy state and step count,
  and the stage restarts at the first unfinished epoch;
- on CPU, deterministic algorithms are enforced for the duration of the stage.
Checkpoint compatibility is decided here and only here: the stage's fingerprint is the caller's input
digests (which upstream files and params it trained on) plus `training_fingerprint` (model shape,
strategy, optimisation, steps per epoch), and its key names the directory under the checkpoint root
(`cssl_core.train.store`). Another configuration therefore opens another directory, going back resumes or
reuses the first, and a directory whose checkpoint disagrees with its key is refused rather than
silently continued. A damaged last checkpoint costs one epoch, not the stage: see
`cssl_core.train.checkpoint.load_latest`.

Under torchrun (WORLD_SIZE > 1, see `cssl_core.distributed`) the same function is data-parallel: each rank
trains on its strided share of every global batch (`EpochSampler.shard`; masks and replay rows are those one
process would draw for the same samples), gradients are averaged after backward, and metrics are averaged over
ranks. Rank 0 alone chooses the checkpoint directory, writes checkpoints and calls `callback`; every rank
resumes from the same checkpoint. One process never creates a process group: its run is bit-identical.

Progress goes to `callback(epoch, metrics)` after the epoch's checkpoint is on disk: tracking (MLflow, a
progress bar) lives in the caller, and a failing callback cannot cost a finished epoch. Epochs finished
before a crash are not reported again; their metrics are in `TrainResult.history`.
"""

from __future__ import annotations

import contextlib
import copy
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

from cssl_core import distributed as dist
from cssl_core.data.loader import set_epoch, shard_loader
from cssl_core.data.seeding import derive_seed
from cssl_core.device import resolve_device
from cssl_core.strategies.base import StageContext, Strategy
from cssl_core.train.checkpoint import LAST, load_latest, rng_state, save_checkpoint, set_rng_state
from cssl_core.train.config import TrainConfig
from cssl_core.train.optim import build_optimizer
from cssl_core.train.schedule import warmup_cosine
from cssl_core.train.store import adopt_loose_checkpoints, checkpoint_dir, fetch_shared, publish_shared, shared_root
from cssl_core.train.validation import validation_loss

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
    checkpoint_dir: Path | None = None  # this configuration's directory under the checkpoint root
    evicted: list[tuple[Path, int]] = field(default_factory=list)  # (directory, bytes) of older configurations
    adopted: Path | None = None  # where loose checkpoint files of the flat layout went, None when there were none
    shared_from: Path | None = None  # the shared directory ($CSSL_SHARE/checkpoints) whose finished run was taken
    published: Path | None = None  # where this finished first stage was published for other checkouts


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
    model: nn.Module,
    strategy: Strategy,
    config: TrainConfig,
    steps_per_epoch: int,
    world_size: int = 1,
    stage_index: int = 0,
) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: model shape, the strategy's training identity on this
    stage (Strategy.training_identity: the same for every plain-MAE first stage), optimisation, steps per epoch,
    and the number of processes when more than one (the same run up to float reduction order, not bit for bit;
    absent for one process, so single-process keys are what they always were)."""
    model_config = getattr(model, "config", None)
    extra = {"world_size": world_size} if world_size > 1 else {}
    return {
        **extra,
        "train": config.fingerprint(),
        "model": model_config.to_dict() if hasattr(model_config, "to_dict") else type(model).__name__,
        **strategy.training_identity(stage_index),
        "steps_per_epoch": steps_per_epoch,
    }


def _check_fingerprint(saved: dict[str, Any], current: dict[str, Any], directory: Path) -> None:
    """Refuse a directory whose checkpoint was made under another configuration than its key says (files
    copied or moved by hand): resuming it would mix two runs."""
    if saved == current:
        return
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    raise CheckpointMismatch(
        f"checkpoint in {directory} was made with a different configuration ({', '.join(differing)} differ): "
        "remove the directory to start this configuration afresh"
    )


def train_stage(
    model: nn.Module,
    strategy: Strategy,
    loaders: Mapping[str, DataLoader],
    config: TrainConfig,
    checkpoint_root: str | Path,
    callback: Callback | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    stage_index: int = 0,
    stage_name: str = "stage",
    teacher: nn.Module | None = None,
    replay: Any | None = None,
    augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    backend: str = "auto",
) -> TrainResult:
    """Train `model` with `strategy` on `loaders["train"]` for `config.epochs`, resuming from the directory of
    this configuration under `checkpoint_root`.

    `inputs`: digests of what the stage trains on (upstream files, params outside `config`); they become part
    of the fingerprint, so the same settings on other data never resume each other's checkpoints.
    At most `config.keep_checkpoints` configuration directories stay under the root (least recently used go).
    On stages after the first (`stage_index > 0`) the runner gives the strategy what it declares: a frozen
    copy of the incoming model as teacher (`needs_teacher`, unless `teacher` is passed) and frozen lower
    blocks (`freeze_lower_after_first`).
    `augment` (for `ssl.augment: batch`) turns each train batch, once on the device, into the augmented batch.
    `loaders["val"]` (optional) adds the held-out masked-reconstruction loss to each epoch's metrics.
    Metrics per epoch: "loss/<term>" for every term `observe` returns, "lr", "images_per_s",
    "data_wait_fraction" (time blocked on the loader / epoch time), "epoch_time_s", "val/mae" if a val loader.
    Under torchrun, `loaders["train"]` holds this rank's batch size (global batch / world size) and is sharded
    here; `backend` is the process group's ("auto": nccl on CUDA, gloo on CPU).

    The steps, in this order (each a function below): join the process group and shard the loader, give a later
    stage its teacher and frozen blocks, build the optimiser, open the checkpoint store, resume (or seed), then
    the epoch loop.
    """
    run = _set_up_processes(model, strategy, loaders, config, backend, augment)
    checkpoint_root = Path(checkpoint_root)
    teacher = _prepare_later_stage(model, strategy, teacher, stage_index)

    with deterministic_algorithms(config.deterministic and run.device.type == "cpu", run.device):
        model.to(run.device)
        if teacher is not None:
            teacher.to(run.device).eval()
        optimizer, scheduler = _build_optimisation(run)
        fingerprint = training_fingerprint(
            model, strategy, config, run.steps_per_epoch, run.where.world_size, stage_index
        )
        store = _open_checkpoint_store(checkpoint_root, inputs, fingerprint, config, stage_index, run.where)
        progress = _resume_or_seed(run, optimizer, scheduler, store.directory, fingerprint)
        dist.broadcast_module(model, *strategy.trainable_modules())  # same start on every rank, whoever built it

        generator = torch.Generator()
        context = StageContext(
            stage_index=stage_index,
            stage_name=stage_name,
            model=model,
            teacher=teacher,
            replay=replay,
            device=run.device,
            generator=generator,
            new_stage_size=len(run.train_loader.dataset) if hasattr(run.train_loader.dataset, "__len__") else None,
            rank=run.where.rank,
            world_size=run.where.world_size,
        )
        strategy.begin_stage(context)
        last_path = _run_epochs(
            run, optimizer, scheduler, context, generator, store.directory, fingerprint, progress, callback
        )
        strategy.end_stage(context)
        share = store.share
        published = publish_shared(share, store.directory, LAST) if share is not None and run.where.is_main else None
        dist.barrier()  # the last checkpoint is on disk before any rank returns

    return TrainResult(
        epochs_run=config.epochs - progress.first_epoch,
        resumed_from=progress.resumed_from,
        global_step=progress.global_step,
        history=progress.history,
        checkpoint=last_path,
        checkpoint_dir=store.directory,
        evicted=store.evicted,
        adopted=store.adopted,
        shared_from=store.shared_from,
        published=published,
    )


@dataclass
class _Run:
    """What every step of a stage works with, fixed once the process group and the device are known."""

    model: nn.Module
    strategy: Strategy
    config: TrainConfig
    train_loader: DataLoader
    val_loader: DataLoader | None
    device: torch.device
    where: dist.Rank
    steps_per_epoch: int  # of this rank's share of the train loader
    use_amp: bool
    augment: Callable[[dict[str, Any]], dict[str, Any]] | None


@dataclass
class _Store:
    """This configuration's checkpoint directory, and what opening it did (rank 0 alone touches the store)."""

    directory: Path
    adopted: Path | None = None
    evicted: list[tuple[Path, int]] = field(default_factory=list)
    shared_from: Path | None = None
    share: Path | None = None  # the shared root a first stage is fetched from and published to, None if none


@dataclass
class _Progress:
    """Where the epoch loop starts (the first unfinished epoch) and, as it runs, how far it has got."""

    first_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None  # completed epochs found in the checkpoint, None for a fresh start
    checkpoint: Path | None = None  # the last checkpoint on disk when the loop starts


def _set_up_processes(
    model: nn.Module,
    strategy: Strategy,
    loaders: Mapping[str, DataLoader],
    config: TrainConfig,
    backend: str,
    augment: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> _Run:
    """Check the loaders, pick the device, join torchrun's process group (none in one process) and shard the
    train loader to this rank's share of every global batch."""
    if "train" not in loaders:
        raise KeyError("loaders must contain 'train'")
    train_loader, val_loader = loaders["train"], loaders.get("val")
    steps_per_epoch = len(train_loader)
    if steps_per_epoch < 1:
        raise ValueError("the train loader yields no batch")
    device = resolve_device(config.device)
    where = dist.init_from_env(device, backend)
    device = dist.local_device(device, where)
    if where.distributed:
        shard_loader(train_loader, where.rank, where.world_size)
        steps_per_epoch = len(train_loader)
        if steps_per_epoch < 1:
            raise ValueError(f"rank {where.rank}'s share of the train set yields no batch")
    use_amp = config.amp and device.type == "cuda"
    return _Run(model, strategy, config, train_loader, val_loader, device, where, steps_per_epoch, use_amp, augment)


def _prepare_later_stage(
    model: nn.Module, strategy: Strategy, teacher: nn.Module | None, stage_index: int
) -> nn.Module | None:
    """What the strategy declares it needs on a later stage (the runner never names one): a frozen copy of the
    incoming model as teacher, frozen lower blocks. Returns the teacher (the one passed in, if any)."""
    if stage_index > 0:
        if teacher is None and strategy.needs_teacher:
            teacher = copy.deepcopy(model).eval()
            teacher.requires_grad_(False)
        if strategy.freeze_lower_after_first:
            model.freeze_lower()
    return teacher


def _build_optimisation(run: _Run) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the model and the strategy's own trainable modules, and the warmup-cosine schedule over the
    stage's steps."""
    config = run.config
    optimizer = build_optimizer(
        [run.model, *run.strategy.trainable_modules()], config.lr, config.weight_decay, config.betas
    )
    total_steps = config.epochs * run.steps_per_epoch
    warmup = min(total_steps, int(round(config.warmup_epochs * run.steps_per_epoch)))
    scheduler = warmup_cosine(optimizer, warmup, total_steps, config.final_lr_ratio)
    return optimizer, scheduler


def _open_checkpoint_store(
    checkpoint_root: Path,
    inputs: Mapping[str, Any] | None,
    fingerprint: dict[str, Any],
    config: TrainConfig,
    stage_index: int,
    where: dist.Rank,
) -> _Store:
    """This configuration's directory under the root, chosen by rank 0 and told to the others; on the way rank 0
    adopts loose checkpoints of the flat layout, evicts old configurations and fetches a shared first stage."""
    adopted, directory, evicted, shared_from, share = None, None, [], None, None
    if where.is_main:  # one process touches the checkpoint store; the others are told where it is
        adopted = adopt_loose_checkpoints(checkpoint_root)
        # eviction happens before training, so the bound holds while this run writes its checkpoints
        directory, evicted = checkpoint_dir(
            checkpoint_root, {"inputs": dict(inputs or {}), "training": fingerprint}, config.keep_checkpoints
        )
        # a first stage trains the same for every strategy (Strategy.training_identity): a finished one that
        # another checkout published under this key ($CSSL_SHARE/checkpoints) is taken instead of retrained
        share = shared_root() if stage_index == 0 else None
        if share is not None and fetch_shared(share, directory, LAST):
            shared_from = share / directory.name
    directory = dist.broadcast_object(directory)
    return _Store(directory, adopted, evicted, shared_from, share)


def _resume_or_seed(
    run: _Run,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    directory: Path,
    fingerprint: dict[str, Any],
) -> _Progress:
    """Load the latest checkpoint of `directory` (refused if made under another configuration) into the model,
    optimiser, scheduler, strategy and RNGs; without one, seed the stage afresh."""
    state = load_latest(directory, map_location=run.device)
    if state is None:
        seed_everything(run.config.seed)
        return _Progress()
    _check_fingerprint(state["fingerprint"], fingerprint, directory)
    run.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    run.strategy.load_state_dict(state["strategy"])
    set_rng_state(state["rng"])
    epoch = int(state["epoch"])
    return _Progress(
        first_epoch=epoch,
        global_step=int(state["global_step"]),
        history=list(state["history"]),
        resumed_from=epoch,
        checkpoint=directory / LAST if (directory / LAST).is_file() else None,
    )


def _run_epochs(
    run: _Run,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    context: StageContext,
    generator: torch.Generator,
    directory: Path,
    fingerprint: dict[str, Any],
    progress: _Progress,
    callback: Callback | None,
) -> Path | None:
    """The epochs from `progress.first_epoch` on, each re-seeded from (seed, epoch), validated, checkpointed
    (rank 0) and then reported to `callback`. Advances `progress.global_step` and `progress.history`; returns the
    last checkpoint on disk."""
    model, config, where = run.model, run.config, run.where
    last_path = progress.checkpoint
    for epoch in range(progress.first_epoch, config.epochs):
        seed_everything(derive_seed(config.seed, "epoch", epoch))
        generator.manual_seed(derive_seed(config.seed, "mask", epoch))
        context.epoch = epoch
        set_epoch(run.train_loader, epoch)
        with _sharded_masks(model, where):
            metrics = _run_epoch(
                model,
                run.strategy,
                run.train_loader,
                optimizer,
                scheduler,
                config,
                run.device,
                run.use_amp,
                run.augment,
            )
        progress.global_step += run.steps_per_epoch
        if run.val_loader is not None:
            val = 0  # rank 0 validates; the others take its figure
            if where.is_main:
                val = validation_loss(model, run.val_loader, run.device, seed=config.seed, amp=run.use_amp)
            metrics["val/mae"] = float(dist.broadcast_object(val))
        progress.history.append(metrics)
        if not where.is_main:
            continue
        last_path = save_checkpoint(
            directory,
            {
                "epoch": epoch + 1,
                "global_step": progress.global_step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "strategy": run.strategy.state_dict(),
                "rng": rng_state(),
                "config": config.to_dict(),
                "fingerprint": fingerprint,
                "history": progress.history,
            },
            keep_epoch=config.keep_epoch_checkpoints,
        )
        if callback is not None:
            callback(epoch, dict(metrics))
    return last_path


@contextlib.contextmanager
def _sharded_masks(model: nn.Module, where: dist.Rank) -> Iterator[None]:
    """Under torchrun, let the model draw each rank's masks as rows of the global batch's (see
    MaskedAutoencoder.draw_keep_indices); validation, outside this block, draws unsharded masks."""
    if not where.distributed:
        yield
        return
    model.mask_shard = (where.rank, where.world_size)
    try:
        yield
    finally:
        del model.mask_shard


def _run_epoch(
    model: nn.Module,
    strategy: Strategy,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    device: torch.device,
    use_amp: bool,
    augment: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
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
        if augment is not None:  # outside autocast: the augmented batch is float32 either way
            batch = augment(batch)
        with autocast:
            losses = strategy.observe(batch)
        if "total" not in losses:
            raise KeyError(f"strategy {strategy.name!r} returned {sorted(losses)} without 'total'")
        total = losses["total"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        dist.average_gradients([p for group in optimizer.param_groups for p in group["params"]])
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
    if dist.active():  # losses averaged over ranks (every rank sees the same numbers); images of all ranks
        names = sorted(sums)
        means = dist.all_reduce_mean(torch.stack([sums[name].to(device) for name in names]))
        sums = {name: means[i] for i, name in enumerate(names)}
        n_images *= torch.distributed.get_world_size()
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
