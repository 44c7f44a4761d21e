"""MAE sizes as named presets, so that params.yaml says `preset: tiny` instead of repeating ten numbers.

The config is frozen and validated once, here: every shape error (patch not dividing the image, width not
divisible by heads, a split block outside the encoder) surfaces when params are parsed, not minutes later
in the first forward pass of a training stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cssl_core.known_keys import reject_unknown_keys

UNKNOWN = "unknown MAE config key(s)"


@dataclass(frozen=True)
class MAEConfig:
    """Sizes of the encoder/decoder and the latent split.

    `split_block` (l) is where replay latents are taken: lower = patch embedding + blocks[:l], upper =
    blocks[l:] + final norm. l = 0 means latents are the patch embeddings themselves.

    `norm_target` chooses the pretext's target: per-patch normalised pixels (True, the MAE paper's
    norm_pix_loss: structure, not grey level) or the [0, 1] pixels themselves (False: the window's grey levels
    become part of what the encoder must carry, so a window change later disturbs it; measured in
    bench/forgetting.py, docs/evaluation.md "Forgetting study").
    """

    img_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    decoder_hidden_size: int
    decoder_num_layers: int
    decoder_num_heads: int
    decoder_mlp_dim: int
    split_block: int
    in_channels: int = 1
    mask_ratio: float = 0.75
    qkv_bias: bool = True
    norm_target: bool = True

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide img_size {self.img_size}")
        for width, heads, what in (
            (self.hidden_size, self.num_heads, "encoder"),
            (self.decoder_hidden_size, self.decoder_num_heads, "decoder"),
        ):
            if width % heads:
                raise ValueError(f"{what} hidden size {width} must be divisible by its heads {heads}")
            if width % 4:
                raise ValueError(f"{what} hidden size {width} must be divisible by 4 (2-D sin-cos embedding)")
        if not 0 <= self.split_block <= self.num_layers:
            raise ValueError(f"split_block must be in [0, num_layers={self.num_layers}], got {self.split_block}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.num_layers < 1 or self.decoder_num_layers < 1:
            raise ValueError("encoder and decoder need at least one block each")

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def patch_dim(self) -> int:
        return self.patch_size**2 * self.in_channels

    def to_dict(self) -> dict[str, Any]:
        """Every field, except `norm_target` at its default: a model of the default config keeps the identity
        (checkpoint resume key, model digest) it had before the field existed."""
        values = asdict(self)
        if values["norm_target"]:
            del values["norm_target"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MAEConfig:
        reject_unknown_keys(values, cls, UNKNOWN)
        return cls(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MAEConfig:
        """A preset with some fields replaced; unknown preset names and keys are errors, not silent no-ops."""
        if name not in PRESETS:
            raise KeyError(f"unknown MAE preset {name!r}; known: {sorted(PRESETS)}")
        reject_unknown_keys(overrides, cls, UNKNOWN)
        return cls(**{**PRESETS[name], **overrides})


# tiny: patch 16 -> 6x6 = 36 tokens (9 visible at mask 0.75), the token count bench/distill.py sizes the
# distillation losses for. Measured on 2 CPU cores, batch 32, forward+backward+AdamW: ~65 ms/step with patch
# 16 vs ~100 ms with patch 12 (64 tokens). `patch_size=12` stays available as an override for finer detail.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        img_size=96,
        patch_size=16,
        hidden_size=192,
        num_layers=6,
        num_heads=3,
        mlp_dim=768,
        decoder_hidden_size=128,
        decoder_num_layers=2,
        decoder_num_heads=4,
        decoder_mlp_dim=512,
        split_block=2,
    ),
    "base": dict(
        img_size=224,
        patch_size=16,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        mlp_dim=3072,
        decoder_hidden_size=512,
        decoder_num_layers=8,
        decoder_num_heads=16,
        decoder_mlp_dim=2048,
        split_block=4,
    ),
}
