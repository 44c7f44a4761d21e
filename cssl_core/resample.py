"""In-plane resampling of CT slices to the square training size.

Slices are first padded to a square with air, so anatomy keeps its aspect ratio, then resized with an
antialiased bilinear filter (downsampling a 512 matrix to 96 without antialiasing aliases noise into
texture the model would learn). Masks are resized per class by area fraction so that a small lesion
still marks the pixels it mostly covers, instead of vanishing under nearest-neighbour sampling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

AIR_HU = -1024.0


def pad_to_square(stack: np.ndarray, fill: float) -> np.ndarray:
    """(n, h, w) -> (n, s, s) with s = max(h, w), content centred."""
    n, h, w = stack.shape
    side = max(h, w)
    if h == w:
        return stack
    out = np.full((n, side, side), fill, dtype=stack.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = stack
    return out


def resize_hu(stack: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) HU -> (n, size, size) float32 HU."""
    square = pad_to_square(np.asarray(stack, dtype=np.float32), AIR_HU)
    if square.shape[1] == size:
        return square
    with torch.no_grad():
        tensor = torch.from_numpy(np.ascontiguousarray(square))[:, None]
        resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[:, 0].numpy()


def resize_mask(stack: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) uint8 class mask -> (n, size, size): a pixel takes the class covering >= half of it."""
    square = pad_to_square(np.asarray(stack, dtype=np.uint8), 0)
    if square.shape[1] == size:
        return square
    out = np.zeros((square.shape[0], size, size), dtype=np.uint8)
    best = np.zeros((square.shape[0], size, size), dtype=np.float32)
    for label in np.unique(square):
        if label == 0:
            continue
        indicator = torch.from_numpy((square == label).astype(np.float32))[:, None]
        with torch.no_grad():
            fraction = F.interpolate(indicator, size=(size, size), mode="area")[:, 0].numpy()
        take = (fraction >= 0.5) & (fraction > best)
        out[take] = label
        best = np.maximum(best, fraction)
    return out
