"""Attacker (a): per-token ridge regression from a stored latent token back to its pixel patch.

Why this attack first: it is the cheapest one that works (closed form, seconds on a CPU) and it needs nothing
but the shared lower encoder and the attacker's own slices. The lower blocks mix tokens only a little, so
token t of z = lower(x) is mostly a (non-linear) function of patch t of x; one linear map per token position
(not one shared map) also absorbs the positional embedding that every token carries.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Ridge

from cssl_core.models.mae import MaskedAutoencoder, patchify, unpatchify
from cssl_core.privacy.common import as_slices, check_latents, check_model, check_slice_size, encode, with_flips


class TokenRidge:
    """One ridge map per token position: latent token (dim,) -> pixel patch (patch_size**2,)."""

    def __init__(self, alpha: float = 1.0) -> None:
        """Args:
        alpha: L2 penalty of every map (> 0); larger trades detail for robustness to latent noise.
        """
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"ridge alpha must be a positive number, got {alpha}")
        self.alpha = float(alpha)
        self.maps: list[Ridge] = []
        self.patch_size = 0
        self.size = 0

    @property
    def fitted(self) -> bool:
        return bool(self.maps)

    def fit(self, latents: np.ndarray, slices: np.ndarray, patch_size: int) -> TokenRidge:
        """Fit the maps on the attacker's (latent, slice) pairs.

        Args:
            latents: (m, tokens, dim) float, lower(x) of the attacker's slices.
            slices: (m, S, S) float32 in [0, 1], those slices; S = patch_size * sqrt(tokens).
            patch_size: the MAE's patch size.
        """
        latents = np.asarray(latents, dtype=np.float32)
        slices = as_slices(slices, "attacker slices")
        if latents.ndim != 3 or latents.shape[0] != slices.shape[0]:
            raise ValueError(f"need one (tokens, dim) latent per slice, got {latents.shape} for {slices.shape[0]}")
        grid = slices.shape[1] // patch_size
        if patch_size < 1 or grid * patch_size != slices.shape[1] or grid * grid != latents.shape[1]:
            raise ValueError(
                f"{latents.shape[1]} tokens of patch {patch_size} do not tile {slices.shape[1:]} slices"
            )
        if latents.shape[0] < 2:
            raise ValueError("ridge needs at least 2 attacker slices")
        patches = _patchify(slices, patch_size)
        self.maps = [
            Ridge(alpha=self.alpha).fit(latents[:, t, :], patches[:, t, :]) for t in range(latents.shape[1])
        ]
        self.patch_size, self.size = patch_size, slices.shape[1]
        return self

    def predict(self, latents: np.ndarray) -> np.ndarray:
        """Reconstruct slices from stored latents.

        Args:
            latents: (n, tokens, dim) float (float16 as stored is fine).
        Returns:
            (n, S, S) float32 clipped to [0, 1] (the range of a windowed slice).
        """
        if not self.fitted:
            raise ValueError("TokenRidge.predict before fit")
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 3 or latents.shape[1] != len(self.maps):
            raise ValueError(f"latents must be (n, {len(self.maps)}, dim), got {latents.shape}")
        patches = np.stack([m.predict(latents[:, t, :]) for t, m in enumerate(self.maps)], axis=1)
        return np.clip(_unpatchify(patches.astype(np.float32), self.patch_size), 0.0, 1.0)


def fit_ridge(
    model: MaskedAutoencoder, attacker_slices: np.ndarray, alpha: float = 1.0, flips: bool = True
) -> TokenRidge:
    """The ridge attacker, fitted on the attacker's slices pushed through the shared lower encoder.

    Args:
        model: the shared MAE (only `lower` is used).
        attacker_slices: (m, S, S) uint8 or float in [0, 1]: the attacker's own slices, never the victims'.
        alpha: ridge penalty.
        flips: also fit on the left-right mirrored slices (doubles the attacker's data for free).
    """
    model = check_model(model)
    slices = as_slices(attacker_slices, "attacker slices")
    check_slice_size(model, slices, "attacker slices")
    if flips:
        slices = with_flips(slices)
    return TokenRidge(alpha).fit(encode(model, slices), slices, model.config.patch_size)


def ridge_reconstruct(model: MaskedAutoencoder, ridge: TokenRidge, latents: np.ndarray) -> np.ndarray:
    """Reconstructions of stored buffer latents (n, tokens, dim) -> (n, S, S) in [0, 1]."""
    return ridge.predict(check_latents(check_model(model), latents, "buffer latents"))


def _patchify(slices: np.ndarray, p: int) -> np.ndarray:
    """(n, S, S) -> (n, tokens, p*p) in the MAE's own token order (the same function the model trains with)."""
    return patchify(torch.from_numpy(np.ascontiguousarray(slices))[:, None], p).numpy()


def _unpatchify(patches: np.ndarray, p: int) -> np.ndarray:
    return unpatchify(torch.from_numpy(np.ascontiguousarray(patches)), p)[:, 0].numpy()
