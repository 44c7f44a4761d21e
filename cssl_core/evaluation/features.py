"""Frozen-encoder features for the downstream probes, and the raw-pixel reference they are judged against.

A probe measures what the *frozen* encoder already represents, so extraction runs in eval mode without
gradients and never changes the model's state. The raw-pixel features answer "is the encoder better than no
encoder at all?": a probe that cannot beat a logistic regression on a 16x16 thumbnail has learnt nothing
the pixels did not already expose linearly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cssl_core.device import device_of, resolve_device
from cssl_core.windowing import to_unit

# uint8 slices are 0..255 windowed grey levels; float16 slices are already in [0, 1] (docs/data-contracts.md)
_READABLE = (np.dtype(np.uint8), np.dtype(np.float16), np.dtype(np.float32))


def as_images(slices: np.ndarray, rows: np.ndarray | list[int]) -> torch.Tensor:
    """(n, 1, S, S) float32 in [0, 1] for `rows` of a (N, S, S) uint8/float16 array (a memory map is fine).

    The same scaling as the training dataset, so the probe sees exactly the input distribution the encoder
    was trained on; only the requested rows are read, never the whole map.
    """
    if np.dtype(slices.dtype) not in _READABLE:
        raise ValueError(f"slices have dtype {slices.dtype}; expected uint8 or float16")
    rows = np.asarray(rows, dtype=np.int64)
    return torch.from_numpy(to_unit(np.asarray(slices[rows]), reciprocal=True)).unsqueeze(1)


@torch.no_grad()
def extract_tokens(
    model: nn.Module,
    slices: np.ndarray,
    rows: np.ndarray | list[int],
    batch: int = 64,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Token features `model.encode(x)` of the frozen encoder, (n, tokens, C) float32, in the order of `rows`.

    Tokens rather than pooled vectors are returned because the attentive and token-level probes need them and
    pooling afterwards is free; the model's train/eval mode is restored so callers can extract mid-training.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rows = np.asarray(rows, dtype=np.int64)
    img_size = getattr(getattr(model, "config", None), "img_size", None)
    if img_size is not None and slices.shape[-1] != img_size:
        raise ValueError(f"slices are {slices.shape[-1]} px but the model expects {img_size} px")
    device = resolve_device(device) if device is not None else device_of(model)
    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    try:
        for start in range(0, len(rows), batch):
            images = as_images(slices, rows[start : start + batch]).to(device)
            chunks.append(model.encode(images).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        n_tokens = getattr(getattr(model, "config", None), "num_patches", 0)
        width = getattr(getattr(model, "config", None), "hidden_size", 0)
        return np.zeros((0, n_tokens, width), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def pooled(tokens: np.ndarray) -> np.ndarray:
    """(n, tokens, C) -> (n, C) token mean: the model's own `pooled` (no class token), without re-encoding."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (n, tokens, C), got shape {tokens.shape}")
    return tokens.mean(axis=1, dtype=np.float64).astype(np.float32)


def pixel_features(slices: np.ndarray, rows: np.ndarray | list[int], size: int = 16, batch: int = 256) -> np.ndarray:
    """(n, size*size) float32 area-downsampled pixels in [0, 1]: the "probe on raw pixels" reference.

    Area averaging (not strided picking) so that a small lesion still moves its cell's value instead of
    vanishing between sampled pixels; read in batches so a large memory map is never loaded at once.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), size * size), dtype=np.float32)
    for start in range(0, len(rows), batch):
        images = as_images(slices, rows[start : start + batch])
        small = F.adaptive_avg_pool2d(images, (size, size))
        out[start : start + len(images)] = small.flatten(1).numpy()
    return out
