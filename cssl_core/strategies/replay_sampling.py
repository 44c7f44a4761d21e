"""Replay sampling shared by the replay strategies: which buffer rows a step replays, and fetching them.

Every draw goes through `context.generator`. The runner reseeds that generator from (seed, epoch) at the
start of each epoch, so drawing replay indices (and mixup coefficients) from it, and from nothing else,
is what keeps a resumed stage bit-identical to an uninterrupted one. Indices are drawn *after* the new
batch's masks, so the new-data MAE term is the same number finetune would compute on that batch.

Buffers may be memory maps (`load_buffer(mmap=True)`): indices are sorted before fancy indexing so a
step reads the file front to back. Sampling is with replacement (torch.randint): a stage's replay cost is
then independent of the buffer size, and order within a replay batch carries no meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from cssl_core.replay.buffer import ReplayBuffer, concat_buffers
from cssl_core.strategies.base import StageContext, Strategy
from cssl_core.strategies.options import check_count as check_count  # re-exported: it was defined here
from cssl_core.strategies.options import check_nonnegative as check_nonnegative
from cssl_core.strategies.options import check_replay_options
from cssl_core.windowing import to_unit


def resolve_buffer(replay: Any, kind: str, strategy: str) -> ReplayBuffer | None:
    """The buffer a stage replays, or None when there is nothing to replay (the first stage).

    Accepts what a runner naturally has: nothing, one (accumulated) buffer, or one buffer per earlier
    stage (concatenated here, in memory). A buffer of the wrong kind is an error, not an empty replay: a
    latent buffer handed to `er` means the pipeline exported for another strategy.
    """
    if replay is None:
        return None
    if isinstance(replay, Sequence) and not isinstance(replay, ReplayBuffer | str | bytes):
        parts = [b for b in replay if b is not None and len(b) > 0]
        if not parts:
            return None
        replay = parts[0] if len(parts) == 1 else concat_buffers(parts)
    if not isinstance(replay, ReplayBuffer):
        raise TypeError(f"strategy {strategy!r}: context.replay must be a ReplayBuffer, got {type(replay).__name__}")
    if len(replay) == 0:
        return None
    if replay.kind != kind:
        raise ValueError(f"strategy {strategy!r} replays a {kind!r} buffer, got a {replay.kind!r} one")
    return replay


def draw_indices(n: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """`size` buffer rows in [0, n), with replacement, sorted (CPU int64)."""
    if n < 1:
        raise ValueError("cannot draw from an empty buffer")
    return torch.sort(torch.randint(n, (size,), generator=generator)).values


def _rows(array: np.ndarray, indices: torch.Tensor) -> torch.Tensor:
    # fancy indexing copies out of a memmap; the copy is contiguous and writable, so from_numpy is safe
    return torch.from_numpy(np.ascontiguousarray(array[indices.cpu().numpy()]))


def fetch_images(buffer: ReplayBuffer, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Buffered slices as the loader would give them: float (B, 1, S, S) in [0, 1] on `device`.

    uint8 crosses to the device before the cast (a quarter of the bytes of float32).
    """
    return to_unit(_rows(buffer.data, indices).to(device)).unsqueeze(1)


def fetch_latents(buffer: ReplayBuffer, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Stored latents as float32 (B, N, C) on `device` (float16 on the wire, cast there)."""
    return _rows(buffer.data, indices).to(device).float()


def fetch_features(buffer: ReplayBuffer, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """DER's stored features as float32 (B, C) on `device`."""
    if buffer.features is None:
        raise ValueError("the buffer stores no features (export it with buffer_features=True)")
    return _rows(buffer.features, indices).to(device).float()


def sample_images(
    buffer: ReplayBuffer, size: int, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 1, S, S), their sorted buffer indices)."""
    indices = draw_indices(len(buffer), size, generator)
    return fetch_images(buffer, indices, device), indices


class ReplayStrategy(Strategy):
    """What every replay strategy shares: resolve the buffer at stage start, the new-data MAE term, and
    stage-1 outputs with the same keys as later stages (replay terms zero), so per-epoch metric names
    do not change between stages."""

    replay_terms: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.buffer: ReplayBuffer | None = None
        check_replay_options(self.options)

    @property
    def active(self) -> bool:
        """Whether this stage replays anything: replay on and a non-empty buffer."""
        return self.buffer is not None

    def begin_stage(self, context: StageContext) -> None:
        super().begin_stage(context)
        self.buffer = resolve_buffer(context.replay, self.buffer_kind, self.name) if self.replays else None
        if self.buffer is None:
            return
        if self.buffer_features and self.buffer.features is None:
            raise ValueError(f"strategy {self.name!r} needs stored features in its buffer (buffer_features)")
        if self.needs_teacher and context.teacher is None:
            raise ValueError(
                f"strategy {self.name!r} replays a buffer and needs context.teacher (the previous stage's model)"
            )
        if context.teacher is not None:
            context.teacher.requires_grad_(False)  # distillation must never move the previous stage

    def end_stage(self, context: StageContext) -> None:
        self.buffer = None  # release the (possibly large) buffer with the stage

    def replay_batch_size(self, batch_size: int) -> int:
        """How many buffered rows one step replays (joint makes this proportional to the buffer)."""
        return int(self.options["replay_batch_size"])

    @property
    def n_replay_rows(self) -> int:
        """How many rows a step draws its replay batch from: the buffer's (latent replay: its cache's)."""
        return len(self.buffer)

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The opening every replay strategy shares, in the order that keeps runs reproducible: the new-data
        MAE term first (its masks are the ones finetune would draw), then this step's sorted replay rows from
        `context.generator`; `with_replay` turns them into the strategy's own terms."""
        mae = self.mae(batch["image"])
        if not self.active:
            return self.without_replay(mae)
        ctx = self.context
        # under torchrun: the replay batch of the GLOBAL batch, drawn identically on every rank (same
        # generator), then split into disjoint strided shards, so the ranks together replay what one process would
        size = self.replay_batch_size(int(batch["image"].shape[0]) * ctx.world_size)
        indices = draw_indices(self.n_replay_rows, size, ctx.generator)
        if ctx.world_size > 1:
            indices = indices[ctx.rank :: ctx.world_size]
        return self.with_replay(mae, indices)

    def with_replay(self, mae: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step's loss terms, "total" included, given the new-data term and the replayed rows (sorted
        CPU int64 indices into the buffer, or into the cache for latent replay)."""
        raise NotImplementedError

    def replay_images(self, indices: torch.Tensor) -> torch.Tensor:
        """The buffered slices at `indices` as model input, (B, 1, S, S) in [0, 1] on the stage's device."""
        return fetch_images(self.buffer, indices, self.context.device)

    def mae(self, images: torch.Tensor) -> torch.Tensor:
        """The pretext loss, masks drawn from the context generator exactly as finetune draws them."""
        ctx = self.context
        loss, _ = ctx.model.mae_loss(images, mask_ratio=self.options.get("mask_ratio"), generator=ctx.generator)
        return loss

    def without_replay(self, mae: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 1 (or replay off): finetune's loss, with the replay terms present and zero."""
        zero = mae.detach().new_zeros(())
        return {"mae": mae, **{term: zero for term in self.replay_terms}, "total": mae}
