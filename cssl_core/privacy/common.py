"""What every attack needs: validated slice arrays, the shared lower encoder run as the attacker would run it,
and a seeded, deterministic torch context.

The attacker's view is modelled exactly: they hold the shared model and push their *own* slices through
`model.lower`, then round the latents through float16, because that is how the buffer stores them. Fitting on
unrounded latents would give the attacker a (tiny) distribution shift the real attacker does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from cssl_core.models.mae import MaskedAutoencoder
from cssl_core.replay.release import pool_tokens
from cssl_core.windowing import to_unit

ENCODE_BATCH = 64
STORED_LATENT_DTYPE = torch.float16  # cssl_core.replay.buffer.LATENT_DTYPE
NOISE_SEED = 20_251  # the attacker's own noise draws (independent of the buffer's)


def as_slices(values: np.ndarray, name: str) -> np.ndarray:
    """Slices as float32 (n, S, S) in [0, 1], from the window stage's uint8 or float (0..1) arrays.

    Args:
        values: (n, S, S) uint8 (0..255) or float in [0, 1]; a single (S, S) slice is refused (ambiguous).
        name: what the array is, for the error message.
    """
    array = np.asarray(values)
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(f"{name} must be square slices of shape (n, S, S), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} holds no slices")
    if array.dtype == np.uint8:
        return to_unit(array)
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {array.dtype}")
    out = to_unit(array)
    if not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (windowed slices); got values outside it or non-finite")
    return out


class ReleasedEncoder(nn.Module):
    """The shared encoder as an attacker of a buffer in a known privacy mode uses it (Kerckhoffs: the mode and its
    knobs are in params.yaml): `lower` followed by the mode's public transform, so every attack works unchanged.

    - pool: tokens averaged over token_pool x token_pool blocks; a token then covers a (patch x token_pool) square,
      which `config` (the inner config with that patch size) tells the attacks.
    - noise: the attacker fits on its own latents with noise of the same relative sd added (`encode` adds it with a
      fixed seed); `lower` itself stays deterministic, as gradient inversion needs.

    Args:
        model: the shared MAE.
        token_pool: the buffer's token pooling (1: none).
        noise_sd: the buffer's noise, a multiple of each channel's sd (0: none).
    """

    def __init__(self, model: MaskedAutoencoder, token_pool: int = 1, noise_sd: float = 0.0) -> None:
        super().__init__()
        if not isinstance(model, MaskedAutoencoder):
            raise ValueError(f"the shared model must be a MaskedAutoencoder, got {type(model).__name__}")
        if token_pool < 1 or model.config.grid_size % token_pool:
            raise ValueError(f"token_pool {token_pool} does not divide the {model.config.grid_size}-token grid")
        if noise_sd < 0:
            raise ValueError(f"noise_sd must be >= 0, got {noise_sd}")
        self.inner = model
        self.token_pool = int(token_pool)
        self.noise_sd = float(noise_sd)
        self.config = dataclasses.replace(model.config, patch_size=model.config.patch_size * self.token_pool)

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.inner.lower(x), self.token_pool)


def check_model(model: nn.Module) -> MaskedAutoencoder | ReleasedEncoder:
    """The attacks use `lower`, the patch size and the token grid of the MAE that produced the buffer, on the CPU."""
    if not isinstance(model, MaskedAutoencoder | ReleasedEncoder):
        raise ValueError(f"the shared model must be a MaskedAutoencoder, got {type(model).__name__}")
    device = next(model.parameters()).device
    if device.type != "cpu":  # the attacks feed numpy arrays and promise CPU-deterministic figures
        raise ValueError(f"the shared model must be on the CPU for an audit, got {device}; call model.cpu()")
    return model


def check_slice_size(model: MaskedAutoencoder | ReleasedEncoder, slices: np.ndarray, name: str) -> None:
    size = model.config.img_size
    if slices.shape[1:] != (size, size):
        raise ValueError(f"{name} are {slices.shape[1:]} but the shared model takes ({size}, {size}) slices")


def check_latents(model: MaskedAutoencoder | ReleasedEncoder, latents: np.ndarray, name: str = "latents") -> np.ndarray:
    """Buffer latents as float32 (n, tokens, dim), checked against the model's token grid and width.

    Args:
        latents: (n, tokens, dim), float16 as stored or any float.
    """
    array = np.asarray(latents)
    expected = (model.config.num_patches, model.config.hidden_size)
    if array.ndim != 3 or array.shape[1:] != expected:
        raise ValueError(
            f"{name} must have shape (n, {expected[0]}, {expected[1]}) for this model, got {array.shape}"
            " (a different model size or patch size?)"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} holds no rows")
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be float latents, got dtype {array.dtype}")
    out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or inf")
    return out


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Attack in eval mode (no dropout in z) and leave the caller's model in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def with_flips(slices: np.ndarray) -> np.ndarray:
    """(n, S, S) -> (2n, S, S): the slices and their left-right mirror images (a free doubling of the attacker's
    data: chest CT is roughly symmetric, and the mirror is still a plausible slice)."""
    return np.concatenate([slices, slices[:, :, ::-1]], axis=0)


@torch.no_grad()
def encode(model: MaskedAutoencoder | ReleasedEncoder, slices: np.ndarray, batch: int = ENCODE_BATCH) -> np.ndarray:
    """z = lower(x) for the attacker's own slices, rounded through float16 as a buffer stores it (and, for a
    ReleasedEncoder of a noise buffer, with noise of the buffer's relative sd, as the buffer's rows carry).

    Args:
        slices: (n, S, S) float32 in [0, 1].
    Returns:
        (n, tokens, dim) float32.
    """
    parts = []
    with eval_mode(model):
        for start in range(0, slices.shape[0], batch):
            x = torch.from_numpy(np.ascontiguousarray(slices[start : start + batch]))[:, None]
            parts.append(model.lower(x).float().numpy())
    latents = np.concatenate(parts)
    if isinstance(model, ReleasedEncoder) and model.noise_sd > 0:
        channel_sd = latents.std(axis=(0, 1), keepdims=True)
        noise = np.random.default_rng(NOISE_SEED).standard_normal(latents.shape).astype(np.float32)
        latents = latents + model.noise_sd * channel_sd * noise
    return torch.from_numpy(latents).to(STORED_LATENT_DTYPE).float().numpy()


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and insist on deterministic kernels for the duration (restored afterwards), so that an audit
    with a given seed gives the same figures twice on the same machine."""
    before = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_rng_state(rng)


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of at most `max_rows` of `n` rows (all of them when n <= max_rows)."""
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (or None for all rows), got {max_rows}")
    if max_rows is None or n <= max_rows:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False)).astype(np.int64)


def gain_below(before: float, after: float, tolerance: float) -> bool:
    """Whether a loss went from `before` to `after` by less than `tolerance` of `before` (relative): the one test
    of an attack's convergence, the decoder's (window means) and gradient inversion's (checkpoints) alike."""
    return before <= 0 or (before - after) / before < tolerance
