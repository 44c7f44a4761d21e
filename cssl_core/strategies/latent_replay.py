"""Latent replay with Wasserstein distillation (ours; Tasai et al., arXiv 2510.27213).

The buffer holds z = lower(x) of earlier stages (float16, no pixels). Each step replays a batch of z
through the student's upper blocks (S) and distils it towards the previous stage's upper blocks on the
same z (T), refined by the batch knowledge ensemble (T~ = BKE(T)), with a Wasserstein loss. This only
makes sense while z means today what it meant when it was stored, hence `freezes_lower`.

Teacher targets are computed once per stage. Teacher and stored latents are both frozen, so T for the
whole buffer is a constant of the stage: computing it in `begin_stage` (in chunks, kept on the device,
float32) costs one pass over the buffer instead of one teacher forward per step, and the per-step work is
the student only. BKE is applied per replay batch, because its affinities are between the samples of a
batch. Cache memory is n * tokens * dim * 4 bytes (plus the float16 latents); on a resume the cache is
recomputed from the same teacher and buffer, so it needs no checkpointing.

Ablations: `wkd: none` = plain feature MSE (no WKD), `bke: false` = raw teacher targets, `replay: false`
= no replay at all (only the frozen lower blocks protect earlier stages).

Decoder distillation (`lambda_decoder` > 0, off by default): WKD keeps the encoder's upper blocks where they
were, but the decoder only ever sees the new stage, so the model as a whole stops reconstructing earlier
windows (the `recon_own` forgetting of docs/evaluation.md) even where the encoder keeps them. With it, each
buffered latent gets one fixed mask (drawn per stage), the teacher's decoder output on its visible tokens is
cached beside the WKD targets, and every step adds the masked-patch MSE between the student's decoder output
and the teacher's. It reads nothing the buffer does not already hold, and needs a latent of every patch (not
the `pool` buffer mode).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cssl_core.distill import bke, wkd_loss
from cssl_core.distributed import gather_rows
from cssl_core.models.mae import keep_count, masked_patch_loss, patch_mask, random_keep_indices
from cssl_core.replay.buffer import ReplayBuffer
from cssl_core.replay.release import sample_clusters
from cssl_core.strategies.base import StageContext
from cssl_core.strategies.options import STRATEGY_OPTIONS, check_latent_replay_options
from cssl_core.strategies.options import WKD_CHOICES as WKD_CHOICES  # re-exported: it was defined here
from cssl_core.strategies.replay_sampling import ReplayStrategy, fetch_latents

TEACHER_CHUNK = 256  # buffer rows per teacher forward when filling the cache: bounds activation memory
DECODER_MASK_SEED = 7_919  # + the stage index: the fixed masks of decoder distillation, the same on a resume
OPTIONS = STRATEGY_OPTIONS["latent_replay"]


class LatentReplayStrategy(ReplayStrategy):
    name: ClassVar[str] = "latent_replay"
    keeps_raw_images: ClassVar[bool] = False
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    freezes_lower: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults
    replay_terms: ClassVar[tuple[str, ...]] = ("wkd", "decoder")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._check_options()
        self.latents: torch.Tensor | None = None  # (n, N, C) float16, on the device
        self.targets: torch.Tensor | None = None  # (n, N, C) float32 teacher.upper(latents), on the device
        self.keep: torch.Tensor | None = None  # (n, N_visible) each row's fixed mask for decoder distillation
        self.decoded: torch.Tensor | None = None  # (n, N, patch_dim) float32 the teacher's decoder output there

    def _check_options(self) -> None:
        """wkd, its options, the flags and the weights (cssl_core.strategies.options, shared with `cssl check`)."""
        check_latent_replay_options(self.options)

    @property
    def replays(self) -> bool:
        return bool(self.options["replay"])

    def begin_stage(self, context: StageContext) -> None:
        super().begin_stage(context)
        self.latents = self.targets = None
        if not self.active:
            return
        model = context.model
        if self.freeze_lower_after_first and not getattr(model, "lower_frozen", True):
            warnings.warn(
                "latent_replay replays stored latents but the model's lower blocks are not frozen: the latents"
                " go stale as the stage trains (the runner should call model.freeze_lower(), or set"
                " unfreeze_lower: true to accept this)",
                stacklevel=2,
            )
        self.latents, self.targets = teacher_cache(context.teacher, replay_rows(self.buffer, context), context.device)
        self.keep = self.decoded = None
        if self.options["lambda_decoder"] > 0:
            ratio = self.options["mask_ratio"] or model.config.mask_ratio
            self.keep, self.decoded = decoder_cache(context.teacher, self.latents, ratio, context.stage_index)

    def end_stage(self, context: StageContext) -> None:
        super().end_stage(context)
        self.latents = self.targets = self.keep = self.decoded = None

    @property
    def n_replay_rows(self) -> int:
        return len(self.latents)  # an aggregate buffer is replayed through its synthetic rows (replay_rows)

    def with_replay(self, mae: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = indices.to(self.latents.device)
        # BKE affinities and WKD statistics are over the GLOBAL replay batch: rows of every rank (identity in one
        # process), gradients flowing back to this rank's rows
        student = gather_rows(self.context.model.upper(self.latents[indices].float()))
        teacher = gather_rows(self.targets[indices])
        if self.options["bke"]:
            teacher = bke(teacher, float(self.options["bke_omega"]), float(self.options["bke_tau"]))
        loss = self.distill(student, teacher)
        total = mae + self.options["lambda_wkd"] * loss
        decoder = mae.detach().new_zeros(())
        if self.keep is not None:
            model, keep = self.context.model, self.keep[indices]
            pred = model.decode(model.upper(visible_tokens(self.latents[indices], keep)), keep)
            decoder = masked_patch_loss(pred, self.decoded[indices], patch_mask(keep, pred.shape[1]))
            total = total + self.options["lambda_decoder"] * decoder
        return {"mae": mae, "wkd": loss, "decoder": decoder, "total": total}

    def distill(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """WKD in the configured mode, or plain MSE for the no-WKD ablation (same targets either way)."""
        mode = self.options["wkd"]
        if mode == "none":
            return F.mse_loss(student.float(), teacher.detach().float())
        return wkd_loss(student, teacher, mode, **dict(self.options["wkd_options"]))


def replay_rows(buffer: ReplayBuffer, context: StageContext) -> ReplayBuffer:
    """The rows to replay: the buffer itself, or for an `aggregate` buffer (cluster statistics only) synthetic
    latents drawn from each cluster, as many as it counted slices. Seeded by the stage, not by the runner's
    per-epoch generator, so a resumed stage replays the same synthetic rows as an uninterrupted one."""
    if not buffer.holds_clusters:
        return buffer
    generator = torch.Generator().manual_seed(1_000_003 * (context.stage_index + 1) + len(buffer))
    latents = sample_clusters(np.asarray(buffer.data), np.asarray(buffer.spread), np.asarray(buffer.counts), generator)
    repeat = np.asarray(buffer.counts, dtype=np.int64)
    return ReplayBuffer(
        "latent", latents.numpy(), np.repeat(buffer.stage, repeat), np.repeat(buffer.window, repeat)
    )


@torch.no_grad()
def teacher_cache(
    teacher: torch.nn.Module, buffer: ReplayBuffer, device: torch.device, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents float16, teacher.upper(latents) float32), both (n, N, C) on `device`, computed chunk by chunk.

    Autocast is switched off here (the runner calls `begin_stage` outside its autocast block anyway): the
    targets are computed once and reused all stage, so they are worth full precision.
    """
    chunk = chunk or TEACHER_CHUNK
    teacher.eval()
    n = len(buffer)
    latents = torch.empty((n, *buffer.data.shape[1:]), dtype=torch.float16, device=device)
    targets: torch.Tensor | None = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        z = fetch_latents(buffer, torch.arange(start, stop), device)
        with torch.autocast(device.type, enabled=False):
            out = teacher.upper(z).float()
        if targets is None:  # preallocated: torch.cat of the chunks would hold the cache twice at its peak
            targets = torch.empty((n, *out.shape[1:]), dtype=torch.float32, device=device)
        latents[start:stop] = z.half()
        targets[start:stop] = out
    return latents, targets


def visible_tokens(latents: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(n, N_visible, C) float32: the tokens of `latents` (n, N, C) that `keep` (n, N_visible) names."""
    return torch.gather(latents.float(), 1, keep.unsqueeze(-1).expand(-1, -1, latents.shape[-1]))


@torch.no_grad()
def decoder_cache(
    teacher: torch.nn.Module, latents: torch.Tensor, mask_ratio: float, stage_index: int, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep (n, N_visible), the teacher's decoder output (n, N, patch_dim) float32) for every cached latent:
    one mask per row, drawn from a generator seeded by the stage, so a resumed stage distils the same pairs.

    Raises:
        ValueError: the latents do not hold one token per patch (the `pool` buffer mode pools them).
    """
    n, tokens = latents.shape[:2]
    patches = teacher.config.num_patches
    if tokens != patches:
        raise ValueError(
            f"lambda_decoder > 0 needs a latent of every patch ({patches} tokens) but the buffer holds {tokens}"
            " per slice (replay.privacy.mode pool): set ssl.strategies.latent_replay.lambda_decoder: 0 or another"
            " buffer mode"
        )
    generator = torch.Generator().manual_seed(DECODER_MASK_SEED + stage_index)
    keep = random_keep_indices(n, patches, keep_count(patches, mask_ratio), generator, latents.device)
    chunk = chunk or TEACHER_CHUNK
    teacher.eval()
    decoded: torch.Tensor | None = None
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        with torch.autocast(latents.device.type, enabled=False):
            out = teacher.decode(teacher.upper(visible_tokens(latents[rows], keep[rows])), keep[rows]).float()
        if decoded is None:
            decoded = torch.empty((n, *out.shape[1:]), dtype=torch.float32, device=latents.device)
        decoded[rows] = out
    return keep, decoded
