"""Experience replay (ER): the MAE loss on the new batch plus the MAE loss on a batch of stored raw slices.

The simplest strategy that remembers, and the reference the latent methods must approach without keeping
pixels. It keeps raw images, so it is not private: its buffers hold slices of earlier cohorts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from cssl_core.strategies.options import STRATEGY_OPTIONS
from cssl_core.strategies.replay_sampling import ReplayStrategy

OPTIONS = STRATEGY_OPTIONS["er"]


class ExperienceReplayStrategy(ReplayStrategy):
    name: ClassVar[str] = "er"
    keeps_raw_images: ClassVar[bool] = True
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults
    replay_terms: ClassVar[tuple[str, ...]] = ("mae_replay",)

    def with_replay(self, mae: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        replay = self.mae(self.replay_images(indices))
        return {"mae": mae, "mae_replay": replay, "total": mae + replay}
