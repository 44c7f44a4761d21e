"""Experience replay (ER): the MAE loss on the new batch plus the MAE loss on a batch of stored raw slices.

The simplest strategy that remembers, and the reference the latent methods must approach without keeping
pixels. It keeps raw images, so it is not private: its buffers hold slices of earlier cohorts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from cssl_core.strategies.options import STRATEGY_OPTIONS
from cssl_core.strategies.replay_sampling import ReplayStrategy, sample_images

OPTIONS = STRATEGY_OPTIONS["er"]


class ExperienceReplayStrategy(ReplayStrategy):
    name: ClassVar[str] = "er"
    keeps_raw_images: ClassVar[bool] = True
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults
    replay_terms: ClassVar[tuple[str, ...]] = ("mae_replay",)

    def replay_batch_size(self, batch_size: int) -> int:
        """How many buffered slices one step replays (joint makes this proportional to the buffer)."""
        return int(self.options["replay_batch_size"])

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        mae = self.mae(batch["image"])  # first: its masks are the ones finetune would draw
        if not self.active:
            return self.without_replay(mae)
        ctx = self.context
        size = self.replay_batch_size(int(batch["image"].shape[0]))
        images, _ = sample_images(self.buffer, size, ctx.generator, ctx.device)
        replay = self.mae(images)
        return {"mae": mae, "mae_replay": replay, "total": mae + replay}
