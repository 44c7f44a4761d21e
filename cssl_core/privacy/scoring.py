"""Scoring reconstructions against the victims' true slices: the ONLY code in this package that sees them.

Kept apart from the attacks on purpose: an attack module takes the buffer, the shared model and the attacker's
own slices, nothing else, so a reader can check that no figure was obtained by peeking at the answer.

SSIM and PSNR come from MONAI's metrics (`SSIMMetric`: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, as in
Wang et al. 2004; `PSNRMetric`), a library already in the stack, never re-implemented here. Both on
data_range 1, the range of a windowed slice. A per-buffer figure is the median over rows and the 95th
percentile: the median is the typical leak, the 95th percentile the best-recovered 5% of rows (the leak a
privacy statement has to own).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric

from cssl_core.privacy.common import as_slices

SSIM_WINDOW = 11
PSNR_MAX_DB = 100.0  # an exact copy (MSE 0, PSNR infinite) is reported as 100 dB so figures stay finite


def score(reconstructions: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row SSIM and PSNR of each reconstruction against its true slice.

    Args:
        reconstructions: (n, S, S) float in [0, 1] (or uint8), one per buffer row.
        truth: (n, S, S) the victims' true slices, aligned row for row.
    Returns:
        {"ssim": (n,), "psnr": (n,)} float64; PSNR in dB, capped at PSNR_MAX_DB.
    """
    recon = as_slices(reconstructions, "reconstructions")
    true = as_slices(truth, "true slices")
    if recon.shape != true.shape:
        raise ValueError(f"reconstructions {recon.shape} and true slices {true.shape} must align row for row")
    if true.shape[1] < SSIM_WINDOW:
        raise ValueError(f"slices of {true.shape[1]} px are smaller than the SSIM window ({SSIM_WINDOW} px)")
    pred_t = torch.from_numpy(recon)[:, None].double()
    true_t = torch.from_numpy(true)[:, None].double()
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=SSIM_WINDOW, reduction="none")(pred_t, true_t)
    psnr = PSNRMetric(max_val=1.0, reduction="none")(pred_t, true_t)
    return {
        "ssim": ssim.reshape(-1).numpy().astype(np.float64),
        "psnr": np.minimum(psnr.reshape(-1).numpy().astype(np.float64), PSNR_MAX_DB),
    }


def summarise(scores: dict[str, np.ndarray], prefix: str) -> dict[str, float]:
    """Median and 95th percentile of each score, as flat keys `<prefix>_ssim_p50`, `<prefix>_psnr_p95`, ...

    Args:
        scores: the output of `score`.
        prefix: the attacker's name.
    """
    out = {}
    for metric in ("ssim", "psnr"):
        values = np.asarray(scores[metric], dtype=np.float64)
        if values.size == 0:
            raise ValueError(f"no {metric} values to summarise")
        out[f"{prefix}_{metric}_p50"] = round(float(np.percentile(values, 50)), 6)
        out[f"{prefix}_{metric}_p95"] = round(float(np.percentile(values, 95)), 6)
    return out


def score_and_summarise(reconstructions: np.ndarray, truth: np.ndarray, prefix: str) -> dict[str, float]:
    """`summarise(score(...))`: the per-buffer figures of one attacker."""
    return summarise(score(reconstructions, truth), prefix)
