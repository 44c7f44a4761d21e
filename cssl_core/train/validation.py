"""Held-out masked-reconstruction loss: the label-free measure of how well (and later, how much less well)
the encoder + decoder model a stage's slices.

Masks come from a generator seeded once per call from (seed, "val"), so two evaluations of the same model
see the same masks, numbers are comparable across epochs and stages, and the training RNG is untouched.

Named "validation" (the per-epoch `val/mae` of the training loop), not "evaluate": that is the stage
(tasks/evaluate.py) and its package (cssl_core.evaluation), which measure finished encoders.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.data import DataLoader

from cssl_core.data.seeding import derive_seed
from cssl_core.device import resolve_device


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    *,
    seed: int = 0,
    mask_ratio: float | None = None,
    amp: bool = False,
) -> float:
    """Sample-weighted mean MAE loss of `model` over `loader` (eval mode; the model's mode is restored)."""
    device = resolve_device(device)
    generator = torch.Generator().manual_seed(derive_seed(seed, "val"))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            with autocast:
                loss, _ = model.mae_loss(images, mask_ratio=mask_ratio, generator=generator)
            total += float(loss) * images.shape[0]
            count += images.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation loader yields no sample")
    return total / count
