"""The training augmentation of `transforms.train_transforms`, done on a whole uint8 batch on the device.

Why: the per-sample MONAI pipeline costs about a millisecond of CPU per 224 px slice, so a GPU step on a
large batch waits for the loader unless many cores augment. Shipping the stored uint8 slices (a quarter of
the float32 bytes) and augmenting the batch with a handful of batched torch ops (one `grid_sample` for crop
and resize, a flip, an affine jitter, a clamp) moves that work to the device.

Same operations and ranges as the per-sample path, not the same numbers: a random resized crop (each side
uniform in [round(min_crop * S), S], the corner uniform within the slice), bilinear resize to `size`
(align_corners=False, no anti-aliasing), a left-right flip with `flip_prob`, intensity scale x * (1 + u),
u ~ U(-scale, scale) with `jitter_prob`, shift + v, v ~ U(-shift, shift) with `jitter_prob`, clamp to
[0, 1]. Each sample's parameters are drawn on the CPU from *its own* sample seed (the one `EpochSampler`
sends), so a sample's augmentation does not depend on its batch, the worker count or the device; only the
interpolation arithmetic differs between devices (float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cssl_core.data.augment_options import AugmentOptions
from cssl_core.windowing import to_unit


@dataclass(frozen=True)
class BatchAugmentParams:
    """Per-sample parameters of one batch, as float64/bool CPU arrays of length B (sizes and corners in pixels)."""

    crop_h: np.ndarray
    crop_w: np.ndarray
    top: np.ndarray
    left: np.ndarray
    flip: np.ndarray
    scale: np.ndarray  # multiplier 1 + u (1 when not drawn)
    shift: np.ndarray  # offset v (0 when not drawn)


def draw_params(
    seeds: Sequence[int] | np.ndarray | torch.Tensor, stored: int, options: AugmentOptions = AugmentOptions()
) -> BatchAugmentParams:
    """Each sample's crop, flip and jitter from its own seed: a pure function of (seed, stored size, options)."""
    seeds = seeds.tolist() if isinstance(seeds, torch.Tensor | np.ndarray) else list(seeds)
    smallest = max(1, int(round(stored * options.min_crop)))
    rows = np.empty((len(seeds), 7), dtype=np.float64)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        h, w = rng.integers(smallest, stored + 1, size=2)
        top, left = rng.integers(0, stored - h + 1), rng.integers(0, stored - w + 1)
        u = rng.random(5)
        factor = rng.uniform(-options.scale, options.scale) if u[1] < options.jitter_prob else 0.0
        offset = rng.uniform(-options.shift, options.shift) if u[2] < options.jitter_prob else 0.0
        rows[i] = (h, w, top, left, float(u[0] < options.flip_prob), 1.0 + factor, offset)
    return BatchAugmentParams(
        crop_h=rows[:, 0], crop_w=rows[:, 1], top=rows[:, 2], left=rows[:, 3],
        flip=rows[:, 4].astype(bool), scale=rows[:, 5], shift=rows[:, 6],
    )


def _crop_grid(params: BatchAugmentParams, stored: int, size: int, device: torch.device) -> torch.Tensor:
    """Sampling grid (B, size, size, 2) of each sample's (flipped) crop, in grid_sample's [-1, 1] coordinates
    (align_corners=False), so that bilinear sampling equals cropping, `interpolate(..., "bilinear")`, flipping.

    Built from two 1-D coordinate vectors per sample (the grid of a crop is separable), not `affine_grid`,
    whose batched matrix product cost ten times the sampling itself on a CPU. The flip reverses the x vector:
    output pixel j then samples exactly where pixel size-1-j did, so it equals flipping the crop.
    """
    centres = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1  # output pixel centres in [-1, 1]
    # a crop [left, left + w) of a width-S image spans [2 left / S - 1, 2 (left + w) / S - 1] in grid units
    def axis(extent: np.ndarray, start: np.ndarray) -> torch.Tensor:
        half, middle = torch.from_numpy(extent / stored), torch.from_numpy((2 * start + extent) / stored - 1)
        # clamped to the centres of the crop's first and last pixels: like `interpolate` on the cropped array,
        # the border samples repeat the crop's edge instead of blending in the pixels just outside it
        first = torch.from_numpy((2 * start + 1) / stored - 1)
        last = torch.from_numpy((2 * (start + extent) - 1) / stored - 1)
        return torch.maximum(torch.minimum(half[:, None] * centres + middle[:, None], last[:, None]), first[:, None])

    xs, ys = axis(params.crop_w, params.left), axis(params.crop_h, params.top)
    flip = torch.from_numpy(params.flip)[:, None]
    xs = torch.where(flip, xs.flip(-1), xs)
    xs, ys = xs.float().to(device, non_blocking=True), ys.float().to(device, non_blocking=True)
    n = xs.shape[0]
    return torch.stack((xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)), dim=-1)


@dataclass(frozen=True)
class BatchAugment:
    """`augment_batch` as a step of the training loop: a batch dict with stored "image" and "seed" -> augmented."""

    size: int

    def __call__(self, batch: dict) -> dict:
        return {**batch, "image": augment_batch(batch["image"], batch["seed"], self.size)}


def augment_batch(
    images: torch.Tensor,
    seeds: Sequence[int] | np.ndarray | torch.Tensor,
    size: int,
    options: AugmentOptions = AugmentOptions(),
) -> torch.Tensor:
    """(B, 1, S, S) stored slices (uint8 or float in [0, 1], on any device) -> float32 (B, 1, size, size) in [0, 1].

    `seeds` holds one seed per sample (the batch's "seed" entry); same seeds, same augmentation.
    """
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (B, 1, S, S), got {tuple(images.shape)}")
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {images.shape[0]}")
    stored = int(images.shape[-1])
    params = draw_params(seeds, stored, options)
    device = images.device
    unit = to_unit(images, reciprocal=True)  # uint8 -> float32 on the device, as WindowedSlices reads a slice
    out = F.grid_sample(
        unit, _crop_grid(params, stored, size, device), mode="bilinear", padding_mode="border", align_corners=False
    )
    gain = torch.from_numpy(params.scale).float().to(device).view(-1, 1, 1, 1)
    offset = torch.from_numpy(params.shift).float().to(device).view(-1, 1, 1, 1)
    return out.mul_(gain).add_(offset).clamp_(0.0, 1.0)
