"""Dark experience replay (DER++, Buzzega et al. 2020) adapted to self-supervision.

DER keeps, next to each buffered input, the model's output at the time it was stored and pulls today's
output towards it; without labels or logits, the output is the pooled encoder feature (`model.pooled`,
stored float16 by export@k). The MAE term on the replayed slices is DER++'s replay-label term (beta); the
feature match (alpha) is what stops the representation of old slices from drifting even where
reconstruction stays good. Keeps raw images: not private.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cssl_core.strategies.options import STRATEGY_OPTIONS, check_der_options
from cssl_core.strategies.replay_sampling import ReplayStrategy, fetch_features

OPTIONS = STRATEGY_OPTIONS["der"]


class DarkExperienceReplayStrategy(ReplayStrategy):
    name: ClassVar[str] = "der"
    keeps_raw_images: ClassVar[bool] = True
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    buffer_features: ClassVar[bool] = True
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults
    replay_terms: ClassVar[tuple[str, ...]] = ("mae_replay", "feature_match")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_der_options(self.options)

    def with_replay(self, mae: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        ctx = self.context
        images = self.replay_images(indices)
        replay = self.mae(images)
        stored = fetch_features(self.buffer, indices, ctx.device)
        match = F.mse_loss(ctx.model.pooled(images).float(), stored)
        total = mae + self.options["beta"] * replay + self.options["alpha"] * match
        return {"mae": mae, "mae_replay": replay, "feature_match": match, "total": total}
