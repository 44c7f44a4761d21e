"""Encoders: the MAE with its lower/upper latent split.

The names are imported on first use (cssl_core._lazy): `cssl_core.models.config` (PRESETS, MAEConfig) needs
neither torch nor MONAI and validates params.yaml before every stage command, models or not.
"""

from cssl_core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cssl_core.models.config": ("PRESETS", "MAEConfig"),
        "cssl_core.models.mae": (
            "MAEOutput",
            "MaskedAutoencoder",
            "build_mae",
            "masked_patch_loss",
            "normalized_targets",
            "patchify",
        ),
    },
)
