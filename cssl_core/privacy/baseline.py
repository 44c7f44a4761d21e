"""The floor every attack is measured against: an attacker who ignores the buffer and guesses their mean slice.

A reconstruction that scores no better than this has learned nothing from the stored row; one far above it has
recovered the victim's slice. Reporting attacks without this baseline would hide how much of an SSIM figure
comes from the shared anatomy of chest CT alone.
"""

from __future__ import annotations

import numpy as np

from cssl_core.privacy.common import as_slices


def mean_slice(attacker_slices: np.ndarray) -> np.ndarray:
    """The attacker's pixel-wise mean slice.

    Args:
        attacker_slices: (m, S, S) uint8 or float in [0, 1], the attacker's own slices.
    Returns:
        (S, S) float32 in [0, 1].
    """
    return as_slices(attacker_slices, "attacker slices").mean(axis=0)


def predict_mean(attacker_slices: np.ndarray, n_rows: int) -> np.ndarray:
    """The baseline "reconstruction" of `n_rows` buffer rows: the mean slice, once per row.

    Args:
        attacker_slices: (m, S, S) the attacker's own slices.
        n_rows: how many buffer rows to predict.
    Returns:
        (n_rows, S, S) float32.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    mean = mean_slice(attacker_slices)
    return np.repeat(mean[None], n_rows, axis=0)
