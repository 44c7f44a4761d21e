"""Masked autoencoder (He et al. 2022) on 1-channel 2-D slices, built from MONAI's ViT blocks.

MONAI's `MaskedAutoEncoderViT` computes the same thing but hides the encoder in one `nn.Sequential`, masks
with the global RNG and returns no loss. The method needs three things it does not give:

- the encoder cut at block l (`lower` / `upper`), because replay buffers store z = lower(x) and replay
  them through `upper` of the student and the teacher;
- masking driven by an explicit `torch.Generator`, so that a resumed run draws the same masks;
- the MAE loss (per-patch normalised targets, masked patches only) next to the model that defines the
  patch order.

So this module assembles the same MONAI blocks (`PatchEmbeddingBlock`, `TransformerBlock`) itself. There is
no class token: latents and features are pure patch tokens (B, N, C), and the pooled feature is the token
mean, which is what the linear probe and the buffer selectors use.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.networks.layers import trunc_normal_
from torch import nn

from cssl_core.models.config import MAEConfig

TARGET_EPS = 1e-6


@dataclass
class MAEOutput:
    """What one masked forward pass produced; `mask` is 1 where a patch was hidden from the encoder."""

    pred: torch.Tensor  # (B, N, patch_dim) decoder prediction, in the target's space
    target: torch.Tensor  # (B, N, patch_dim) per-patch normalised pixels (or raw ones, config.norm_target False)
    mask: torch.Tensor  # (B, N) float, 1 = masked
    ids_keep: torch.Tensor  # (B, N_visible) token indices that went through the encoder


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C) in the token order of MONAI's conv patch embedding (row-major)."""
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 1) -> torch.Tensor:
    """Inverse of `patchify` for a square grid."""
    grid = int(round(patches.shape[1] ** 0.5))
    return rearrange(
        patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=grid, w=grid, p1=patch_size, p2=patch_size, c=channels
    )


def normalized_targets(patches: torch.Tensor, eps: float = TARGET_EPS) -> torch.Tensor:
    """Per-patch zero mean / unit variance: the MAE paper's `norm_pix_loss`, which makes the pretext about
    structure rather than about the window's absolute grey level (a window is a domain shift)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


LossReduction = Literal["mean", "none"]


def masked_patch_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, reduction: LossReduction = "mean"
) -> torch.Tensor:
    """The MSE of the masked patches only (visible patches were seen, so they do not count).

    `reduction="mean"` is the training loss: one scalar over every masked patch of the batch. `"none"` gives
    one value per sample, (B,), the mean over that sample's masked patches: what export's `selective`
    selector ranks samples by. Both reduce the same per-patch errors, so a sample's score is the training
    loss it would contribute on its own. A sample without any masked patch scores nan under "none" (its loss
    is undefined), whereas "mean" divides by at least one patch.
    """
    per_patch = (pred.float() - target.float()).square().mean(dim=-1)
    mask = mask.to(per_patch.dtype)
    if reduction == "mean":
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
    if reduction == "none":
        return (per_patch * mask).sum(dim=1) / mask.sum(dim=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def keep_count(n_tokens: int, mask_ratio: float) -> int:
    """How many of `n_tokens` patches stay visible at `mask_ratio` (at least one: the encoder needs a token)."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    return max(1, int(round(n_tokens * (1.0 - mask_ratio))))


def random_keep_indices(
    batch: int, tokens: int, keep: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Indices of the tokens each sample keeps, sorted (so kept tokens stay in raster order).

    Noise is drawn on the CPU so that one CPU generator gives the same masks on every device.
    """
    noise = torch.rand(batch, tokens, generator=generator)
    ids = torch.argsort(noise, dim=1)[:, :keep]
    return torch.sort(ids, dim=1).values.to(device)


def patch_mask(ids_keep: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """(B, n_tokens) float on the device of `ids_keep`: 1 where a patch was hidden, 0 where it was kept."""
    mask = torch.ones(ids_keep.shape[0], n_tokens, device=ids_keep.device)
    mask.scatter_(1, ids_keep, 0.0)
    return mask


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class MaskedAutoencoder(nn.Module):
    """ViT-MAE whose encoder is split at `config.split_block` into a lower and an upper part."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        with warnings.catch_warnings():  # MONAI's sin-cos builder calls meshgrid without indexing= (harmless)
            warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
            self._build(c)
        self._lower_frozen = False
        self._init_weights()

    def _build(self, c: MAEConfig) -> None:
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=c.in_channels,
            img_size=c.img_size,
            patch_size=c.patch_size,
            hidden_size=c.hidden_size,
            num_heads=c.num_heads,
            proj_type="conv",
            pos_embed_type="sincos",
            spatial_dims=2,
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(c.hidden_size, c.mlp_dim, c.num_heads, qkv_bias=c.qkv_bias, use_flash_attention=True)
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.hidden_size)

        self.decoder_embed = nn.Linear(c.hidden_size, c.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_hidden_size))
        self.decoder_pos_embedding = build_sincos_position_embedding(
            [c.grid_size, c.grid_size], c.decoder_hidden_size, spatial_dims=2
        )
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(
                c.decoder_hidden_size,
                c.decoder_mlp_dim,
                c.decoder_num_heads,
                qkv_bias=c.qkv_bias,
                use_flash_attention=True,
            )
            for _ in range(c.decoder_num_layers)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_hidden_size)
        self.decoder_pred = nn.Linear(c.decoder_hidden_size, c.patch_dim)

    # -- initialisation -------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        # The MAE reference recipe (xavier for linears and for the patch projection viewed as a linear, small
        # normal for the mask token) instead of torch's kaiming-uniform defaults that MONAI's blocks keep, so
        # that numbers stay comparable with published MAE baselines.
        conv = self.patch_embedding.patch_embeddings
        nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(conv.bias)
        trunc_normal_(self.mask_token, mean=0.0, std=0.02, a=-2.0, b=2.0)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # -- the latent split -------------------------------------------------------------------------------
    @property
    def split_block(self) -> int:
        return self.config.split_block

    @property
    def lower_modules(self) -> list[nn.Module]:
        return [self.patch_embedding, *self.blocks[: self.split_block]]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) in [0, 1] -> patch tokens with positional embedding, (B, N, C)."""
        return self.patch_embedding(x)

    def _run(self, tokens: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for block in self.blocks[start:stop]:
            tokens = block(tokens)
        return tokens

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """z = blocks[:l](embed(x)) on the whole, unmasked slice: what a latent replay buffer stores."""
        return self._run(self.embed(x), 0, self.split_block)

    def upper(self, z: torch.Tensor) -> torch.Tensor:
        """blocks[l:] + final norm. Accepts float16 buffer latents (cast to the model's dtype)."""
        z = z.to(self.norm.weight.dtype)
        return self.norm(self._run(z, self.split_block, len(self.blocks)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token features of the full encoder on the unmasked slice, (B, N, C)."""
        return self.upper(self.lower(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) token mean: the vector probes and buffer selectors see."""
        return self.encode(x).mean(dim=1)

    # -- the pretext ------------------------------------------------------------------------------------
    # forward_masked = encode_visible + decode. The halves are public because the forgetting matrix pairs the
    # encoder of one model with the decoder of another (cssl_core.evaluation.forgetting), with masks drawn once
    # for all images; both paths must compute exactly what training computes.
    def draw_keep_indices(
        self,
        batch: int,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """(batch, N_visible) sorted indices of the patches each image keeps, drawn from `generator` on the
        CPU (same masks on any device) and moved to `device`; `mask_ratio` defaults to the config's."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        keep = keep_count(self.config.num_patches, ratio)
        shard = getattr(self, "mask_shard", None)  # (rank, world): set by the runner under torchrun only
        if shard is None:
            return random_keep_indices(batch, self.config.num_patches, keep, generator, device)
        # every rank draws the masks of the whole global batch from the same generator and keeps its strided
        # rows, the samples EpochSampler gave it: each sample gets the mask one process would have drawn
        rank, world = shard
        return random_keep_indices(batch * world, self.config.num_patches, keep, generator, device)[rank::world]

    def encode_visible(
        self,
        x: torch.Tensor,
        ids_keep: torch.Tensor | None = None,
        *,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent (B, N_visible, C), ids_keep): only the visible tokens go through the encoder (lower and
        upper alike, then the final norm), which is the point of MAE.

        `ids_keep` is either given (masks drawn beforehand, e.g. once for a whole evaluation set) or drawn here
        from `generator` at `mask_ratio`, after the patch embedding, as training has always drawn it.
        """
        tokens = self.embed(x)
        if ids_keep is None:
            ids_keep = self.draw_keep_indices(tokens.shape[0], mask_ratio, generator, tokens.device)
        latent = self.norm(self._run(_gather_tokens(tokens, ids_keep), 0, len(self.blocks)))
        return latent, ids_keep

    def decode(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """(B, N, patch_dim) prediction, in normalised-target space, of every patch from the visible latents:
        embed them, fill the hidden positions with the mask token, add the decoder position embedding, decoder
        blocks, norm, per-patch pixel head. `latent` may come from another model's encoder (cast to ours)."""
        visible = self.decoder_embed(latent.to(self.decoder_embed.weight.dtype))
        full = self.mask_token.to(visible.dtype).expand(visible.shape[0], self.config.num_patches, -1).clone()
        full.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, visible.shape[-1]), visible)
        decoded = full + self.decoder_pos_embedding.to(device=full.device, dtype=full.dtype)
        for block in self.decoder_blocks:
            decoded = block(decoded)
        return self.decoder_pred(self.decoder_norm(decoded))

    def patch_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, patch_dim) what `decode` is trained to predict: per-patch normalised pixels of `x`, or the
        [0, 1] pixels themselves when `config.norm_target` is False."""
        patches = patchify(x.float(), self.config.patch_size)
        return normalized_targets(patches) if self.config.norm_target else patches

    def forward_masked(
        self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> MAEOutput:
        latent, ids_keep = self.encode_visible(x, mask_ratio=mask_ratio, generator=generator)
        pred = self.decode(latent, ids_keep)
        mask = patch_mask(ids_keep, self.config.num_patches)
        return MAEOutput(pred=pred, target=self.patch_targets(x), mask=mask, ids_keep=ids_keep)

    def mae_loss(
        self,
        x: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        reduction: LossReduction = "mean",
    ) -> tuple[torch.Tensor, MAEOutput]:
        """MSE on masked patches against per-patch normalised pixels; returns (loss, details). The loss is one
        scalar (`reduction="mean"`, training) or one value per sample (`"none"`, see `masked_patch_loss`)."""
        out = self.forward_masked(x, mask_ratio=mask_ratio, generator=generator)
        return masked_patch_loss(out.pred, out.target, out.mask, reduction), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    # -- freezing ---------------------------------------------------------------------------------------
    def freeze_lower(self) -> None:
        """Stop training the patch embedding and blocks[:l], so latents stored by earlier stages stay valid.

        The frozen part also stays in eval mode through later `.train()` calls (no dropout noise in z).
        """
        self._lower_frozen = True
        for module in self.lower_modules:
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()

    @property
    def lower_frozen(self) -> bool:
        return self._lower_frozen

    def train(self, mode: bool = True) -> MaskedAutoencoder:
        super().train(mode)
        if self._lower_frozen:
            for module in self.lower_modules:
                module.eval()
        return self


def build_mae(config: MAEConfig | str, **overrides: object) -> MaskedAutoencoder:
    """A model from a config or a preset name (`build_mae("tiny", split_block=3)`)."""
    if isinstance(config, str):
        config = MAEConfig.from_preset(config, **overrides)
    elif overrides:
        raise TypeError("overrides are only accepted with a preset name")
    return MaskedAutoencoder(config)
