"""Attacker (c): optimisation-based inversion through the shared lower encoder itself.

Why this is the strongest attack: the attacker holds the exact function that produced the stored latent, so
they can search for a slice x with lower(x) = z by gradient descent, no training data needed beyond a starting
point. The attacks compose: starting from another attacker's output (ridge) instead of the mean slice lands in
the right basin (measured on the demo buffer: SSIM 0.94 from the ridge output vs 0.36 from the mean slice).
A total-variation prior keeps the search away from high-frequency patterns the encoder happens to ignore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cssl_core.models.mae import MaskedAutoencoder
from cssl_core.privacy.common import (
    as_slices,
    check_latents,
    check_model,
    check_slice_size,
    eval_mode,
    gain_below,
)

BATCH = 64
CONVERGE_WINDOW = 25  # steps between the convergence checks of a batch's objective


@dataclass
class GradientResult:
    """Reconstructions and how well each one reproduces its stored latent, before and after the descent."""

    images: np.ndarray  # (n, S, S) float32 in [0, 1]
    latent_loss_start: np.ndarray  # (n,) MSE(lower(init), z)
    latent_loss_end: np.ndarray  # (n,) MSE(lower(result), z)
    steps: int  # the most steps any batch of rows took (at most the budget)
    converged: bool = False  # every batch stopped because its objective stopped improving


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image anisotropic total variation (mean absolute neighbour difference), (B, 1, S, S) -> (B,)."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


def _latent_loss(model: MaskedAutoencoder, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B,) per-row mean squared error between lower(x) and the stored latents."""
    return (model.lower(x) - z).square().flatten(1).mean(1)


def gradient_invert(
    model: MaskedAutoencoder,
    latents: np.ndarray,
    init: np.ndarray,
    *,
    steps: int = 200,
    lr: float = 0.02,
    tv_weight: float = 1e-3,
    converge_tol: float = 0.0,
) -> GradientResult:
    """Projected Adam on the input slices until the shared encoder reproduces the stored latents.

    Rows are independent (the loss is a sum of per-row terms and Adam is element-wise), so batching them
    changes nothing but speed. Pixels are projected back onto [0, 1] after every step.

    Args:
        model: the shared MAE; its weights are never changed (gradients are taken w.r.t. the input only).
        latents: (n, tokens, dim) stored latents to invert.
        init: (n, S, S) starting slices in [0, 1]: another attacker's output, or the mean slice.
        steps: Adam steps (the attack's budget; 0 returns the init with its loss).
        lr: Adam step size in pixel units.
        tv_weight: weight of the total-variation prior (>= 0).
        converge_tol: with > 0, a batch stops once its objective improves by less than this fraction over
            CONVERGE_WINDOW steps (the attack run to convergence, `steps` its bound); 0: always `steps`.
    """
    model = check_model(model)
    z_all = torch.from_numpy(check_latents(model, latents, "buffer latents"))
    start = as_slices(init, "gradient init")
    check_slice_size(model, start, "gradient init")
    if start.shape[0] != z_all.shape[0]:
        raise ValueError(f"need one init slice per latent: {start.shape[0]} inits for {z_all.shape[0]} latents")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not np.isfinite(tv_weight) or tv_weight < 0:
        raise ValueError(f"tv_weight must be >= 0, got {tv_weight}")
    if not np.isfinite(converge_tol) or converge_tol < 0:
        raise ValueError(f"converge_tol must be >= 0, got {converge_tol}")
    images, loss_start, loss_end = [], [], []
    taken, every_batch_converged = 0, True
    with eval_mode(model):
        for first in range(0, z_all.shape[0], BATCH):
            z = z_all[first : first + BATCH]
            x = torch.from_numpy(start[first : first + BATCH].copy())[:, None].requires_grad_(True)
            optimiser = torch.optim.Adam([x], lr=lr)
            with torch.no_grad():
                loss_start.append(_latent_loss(model, x, z).numpy())
            checkpoint, converged, step = math.inf, False, 0
            for step in range(1, steps + 1):
                objective = (_latent_loss(model, x, z) + tv_weight * total_variation(x)).sum()
                (grad,) = torch.autograd.grad(objective, [x])  # w.r.t. the input only: model weights untouched
                x.grad = grad
                optimiser.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
                if converge_tol > 0 and step % CONVERGE_WINDOW == 0:
                    value = float(objective.detach())
                    if checkpoint < math.inf and gain_below(checkpoint, value, converge_tol):
                        converged = True
                        break
                    checkpoint = value
            taken = max(taken, step)
            every_batch_converged = every_batch_converged and converged
            with torch.no_grad():
                loss_end.append(_latent_loss(model, x, z).numpy())
            images.append(x.detach()[:, 0].numpy().copy())
    return GradientResult(
        images=np.concatenate(images),
        latent_loss_start=np.concatenate(loss_start),
        latent_loss_end=np.concatenate(loss_end),
        steps=taken,
        converged=every_batch_converged and converge_tol > 0 and steps > 0,
    )
