"""Encoders: the MAE with its lower/upper latent split."""

from cssl_core.models.config import PRESETS, MAEConfig
from cssl_core.models.mae import (
    MAEOutput,
    MaskedAutoencoder,
    build_mae,
    masked_patch_loss,
    normalized_targets,
    patchify,
)

__all__ = [
    "PRESETS",
    "MAEConfig",
    "MAEOutput",
    "MaskedAutoencoder",
    "build_mae",
    "masked_patch_loss",
    "normalized_targets",
    "patchify",
]
