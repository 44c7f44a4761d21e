"""Attacker (b): a small learned inversion network from stored latents back to slices.

Why beside ridge: ridge is linear per token and cannot use neighbouring tokens; a few transformer blocks can
(the lower encoder already mixed tokens a little). It is the attack a motivated adversary with a GPU would
scale up, so its figure at a bounded CPU budget is a lower bound on what more steps would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.networks.blocks import TransformerBlock
from torch import nn

from cssl_core.models.mae import MaskedAutoencoder, unpatchify
from cssl_core.privacy.common import (
    as_slices,
    check_latents,
    check_model,
    check_slice_size,
    encode,
    eval_mode,
    gain_below,
    with_flips,
)

PREDICT_BATCH = 64
CONVERGE_WINDOW = 50  # steps per window of the convergence test (mini-batch losses are averaged over it)


class InversionDecoder(nn.Module):
    """Latent tokens (B, tokens, dim) -> slices (B, 1, S, S) in [0, 1]: embed, transformer blocks, patch head."""

    def __init__(
        self, tokens: int, latent_dim: int, patch_size: int, width: int = 128, depth: int = 2, heads: int = 4
    ) -> None:
        """Args:
        tokens: tokens per latent (a square grid).
        latent_dim: width of a stored latent token.
        patch_size: pixels per token side.
        width, depth, heads: the inversion network's own size (width divisible by heads).
        """
        super().__init__()
        grid = int(round(tokens**0.5))
        if tokens < 1 or grid * grid != tokens:
            raise ValueError(f"tokens must form a square grid, got {tokens}")
        for what, value in (("latent_dim", latent_dim), ("patch_size", patch_size), ("depth", depth)):
            if value < 1:
                raise ValueError(f"{what} must be at least 1, got {value}")
        if heads < 1 or width < heads or width % heads:
            raise ValueError(f"width {width} must be a positive multiple of heads {heads}")
        self.patch_size = patch_size
        self.embed = nn.Linear(latent_dim, width)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(width, 4 * width, heads, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_size * patch_size)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(latents) + self.position
        for block in self.blocks:
            tokens = block(tokens)
        return torch.sigmoid(unpatchify(self.head(self.norm(tokens)), self.patch_size))


@dataclass
class TrainedDecoder:
    """The fitted inversion network and what training it cost."""

    decoder: InversionDecoder
    steps: int  # steps taken (at most the budget)
    losses: list[float]  # pixel MSE per step, on the attacker's own training batches
    converged: bool = False  # stopped because the loss stopped improving, not because the budget ran out

    @torch.no_grad()
    def predict(self, latents: np.ndarray) -> np.ndarray:
        """Args:
            latents: (n, tokens, dim) float.
        Returns:
            (n, S, S) float32 in [0, 1].
        """
        array = np.asarray(latents, dtype=np.float32)
        parts = []
        with eval_mode(self.decoder):
            for start in range(0, array.shape[0], PREDICT_BATCH):
                parts.append(self.decoder(torch.from_numpy(array[start : start + PREDICT_BATCH]))[:, 0].numpy())
        return np.concatenate(parts)


def train_decoder(
    model: MaskedAutoencoder,
    attacker_slices: np.ndarray,
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    width: int = 128,
    depth: int = 2,
    heads: int = 4,
    flips: bool = True,
    seed: int = 0,
    converge_tol: float = 0.0,
) -> TrainedDecoder:
    """Train the inversion network on the attacker's (lower(x), x) pairs for at most `steps` AdamW steps.

    An attack stopped at an arbitrary budget understates what a patient attacker gets: with `converge_tol` > 0,
    training goes on until the mean loss of the last CONVERGE_WINDOW steps improves on the window before by
    less than that fraction (converged), or the budget runs out (reported as not converged).

    Args:
        model: the shared MAE (only `lower` is used, never trained).
        attacker_slices: (m, S, S) uint8 or float in [0, 1]: the attacker's own slices.
        steps: optimiser steps (the attack's budget; >= 1).
        batch_size: pairs per step.
        lr: AdamW learning rate.
        width, depth, heads: network size.
        flips: also train on mirrored slices.
        seed: initialisation and batch order (the same seed gives the same network on the same machine).
        converge_tol: relative improvement per window below which training stops (0: always `steps`).
    """
    model = check_model(model)
    if not np.isfinite(converge_tol) or converge_tol < 0:
        raise ValueError(f"converge_tol must be >= 0, got {converge_tol}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps} and {batch_size}")
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    slices = as_slices(attacker_slices, "attacker slices")
    check_slice_size(model, slices, "attacker slices")
    if flips:
        slices = with_flips(slices)
    latents = torch.from_numpy(encode(model, slices))
    targets = torch.from_numpy(slices)[:, None]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's RNG
        torch.manual_seed(seed)
        decoder = InversionDecoder(
            latents.shape[1], latents.shape[2], model.config.patch_size, width=width, depth=depth, heads=heads
        )
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.0)
    decoder.train()
    losses: list[float] = []
    converged = False
    for step in range(1, steps + 1):
        batch = torch.randint(0, latents.shape[0], (min(batch_size, latents.shape[0]),), generator=generator)
        loss = nn.functional.mse_loss(decoder(latents[batch]), targets[batch])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if converge_tol > 0 and step % CONVERGE_WINDOW == 0 and stalled(losses, CONVERGE_WINDOW, converge_tol):
            converged = True
            break
    decoder.eval()
    return TrainedDecoder(decoder=decoder, steps=len(losses), losses=losses, converged=converged)


def stalled(losses: list[float], window: int, tolerance: float) -> bool:
    """Whether the mean of the last `window` losses improves on the `window` before by less than `tolerance`
    (relative); False until two windows exist. Means over a window, since mini-batch losses are noisy."""
    if len(losses) < 2 * window:
        return False
    return gain_below(float(np.mean(losses[-2 * window : -window])), float(np.mean(losses[-window:])), tolerance)


def decoder_reconstruct(model: MaskedAutoencoder, trained: TrainedDecoder, latents: np.ndarray) -> np.ndarray:
    """Reconstructions of stored buffer latents (n, tokens, dim) -> (n, S, S) in [0, 1]."""
    return trained.predict(check_latents(check_model(model), latents, "buffer latents"))
