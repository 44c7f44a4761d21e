"""Scoring reconstructions against the victims' true slices: the ONLY code in this package that sees them.

Kept apart from the attacks on purpose: an attack module takes the buffer, the shared model and the attacker's
own slices, nothing else, so a reader can check that no figure was obtained by peeking at the answer.

SSIM and PSNR come from MONAI's metrics (`SSIMMetric`: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, as in
Wang et al. 2004; `PSNRMetric`), a library already in the stack, never re-implemented here. Both on
data_range 1, the range of a windowed slice. A per-buffer figure is the median over rows and the 95th
percentile: the median is the typical leak, the 95th percentile the best-recovered 5% of rows (the leak a
privacy statement has to own).

`specificity` asks the question SSIM against the true slice leaves open: is a reconstruction closer to the slices
behind its own row (a cluster's members) than to other patients' slices? (docs/privacy.md)
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


SCREEN = 8  # candidates per side kept by pixel distance before SSIM: MONAI's SSIM costs ~5 ms a 96 px pair on a CPU
SCORE_CHUNK = 256  # pairs per SSIM call (bounds the memory of one call)


def _nearest_by_pixels(image: np.ndarray, pool: np.ndarray, keep: int) -> np.ndarray:
    """Positions of the `keep` slices of `pool` (m, S, S) nearest `image` (S, S) in mean squared pixel error."""
    if len(pool) <= keep:
        return np.arange(len(pool))
    distance = np.square(pool - image[None]).reshape(len(pool), -1).mean(axis=1)
    return np.sort(np.argsort(distance, kind="stable")[:keep])


def bootstrap_rate(hits: np.ndarray, seed: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the rate of `hits` (bool (n,)), rows resampled with replacement."""
    from cssl_core.privacy.membership import BOOTSTRAP

    values = np.asarray(hits, dtype=np.float64)
    if values.ndim != 1 or not values.size:
        raise ValueError(f"need a non-empty 1-d array of hits, got shape {values.shape}")
    draws = np.random.default_rng(seed).choice(values, size=(BOOTSTRAP, values.size)).mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return round(float(low), 6), round(float(high), 6)


def specificity(
    reconstructions: np.ndarray,
    members: list[np.ndarray],
    non_members: np.ndarray,
    seed: int,
    screen: int = SCREEN,
) -> dict[str, float | int]:
    """Is each reconstruction closer (SSIM) to the slices behind its own buffer row than to anyone else's?

    A high SSIM against the true slice says little by itself: chest CT slices resemble each other, and a
    reconstruction that looks like *a* chest may score well against every slice. This asks whether it singles
    out its own row's slices: for reconstruction i, the best SSIM against its member slices (a row: its one
    source slice; a cluster: the slices it summarises) against the best SSIM against the non-member pool.

    Cost is bounded by screening: on each side only the `screen` slices nearest by pixel MSE are scored with
    SSIM (the best SSIM is almost always among them), so a reconstruction costs at most 2 x `screen` SSIMs.

    Args:
        reconstructions: (n, S, S) in [0, 1].
        members: n arrays (m_i, S, S): each reconstruction's member slices (scoring side).
        non_members: (M, S, S) slices of patients in no buffer (the attacker's own pool).
        seed: the bootstrap's.
        screen: candidates per side scored with SSIM (>= 1).
    Returns:
        n, rate (fraction whose best member SSIM exceeds its best non-member SSIM) with its 95 % bootstrap
        interval over reconstructions (ci_low, ci_high), chance (the rate if every slice were equally alike:
        the mean of m_i / (m_i + M); exact without screening), margin_p50 (median of best member minus best
        non-member SSIM), member_ssim_p50, non_member_ssim_p50, member_psnr_p50 (PSNR against the best member),
        n_non_member_pool and members_p50 (the pool sizes the rate depends on).
    """
    recon = as_slices(reconstructions, "reconstructions")
    pool = as_slices(non_members, "non-member slices")
    if len(members) != len(recon):
        raise ValueError(f"need one member set per reconstruction: {len(members)} for {len(recon)}")
    if screen < 1:
        raise ValueError(f"screen must be at least 1, got {screen}")
    own = [as_slices(m, "member slices") for m in members]
    if any(m.shape[1:] != recon.shape[1:] for m in own) or pool.shape[1:] != recon.shape[1:]:
        raise ValueError("reconstructions, member and non-member slices must be the same size")
    left, right, owner, side = [], [], [], []
    for i, image in enumerate(recon):
        for flag, candidates in ((True, own[i]), (False, pool)):
            picked = candidates[_nearest_by_pixels(image, candidates, screen)]
            left.append(np.repeat(image[None], len(picked), axis=0))
            right.append(picked)
            owner += [i] * len(picked)
            side += [flag] * len(picked)
    a, b = np.concatenate(left), np.concatenate(right)
    parts = [score(a[k : k + SCORE_CHUNK], b[k : k + SCORE_CHUNK]) for k in range(0, len(a), SCORE_CHUNK)]
    ssim = np.concatenate([p["ssim"] for p in parts])
    psnr = np.concatenate([p["psnr"] for p in parts])
    owner_a, side_a = np.asarray(owner), np.asarray(side)
    best_member = np.empty(len(recon))
    best_other = np.empty(len(recon))
    member_psnr = np.empty(len(recon))
    for i in range(len(recon)):
        mine, theirs = (owner_a == i) & side_a, (owner_a == i) & ~side_a
        k = int(np.argmax(ssim[mine]))
        best_member[i], member_psnr[i] = ssim[mine][k], psnr[mine][k]
        best_other[i] = ssim[theirs].max()
    hits = best_member > best_other
    low, high = bootstrap_rate(hits, seed)
    sizes = np.array([len(m) for m in own], dtype=np.float64)
    return {
        "n": int(len(recon)),
        "rate": round(float(hits.mean()), 6),
        "ci_low": low,
        "ci_high": high,
        "chance": round(float(np.mean(sizes / (sizes + len(pool)))), 6),
        "margin_p50": round(float(np.median(best_member - best_other)), 6),
        "member_ssim_p50": round(float(np.median(best_member)), 6),
        "non_member_ssim_p50": round(float(np.median(best_other)), 6),
        "member_psnr_p50": round(float(np.median(member_psnr)), 6),
        "n_non_member_pool": int(len(pool)),
        "members_p50": float(np.median(sizes)),
    }
