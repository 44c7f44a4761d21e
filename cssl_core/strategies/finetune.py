"""Naive sequential fine-tuning: the MAE loss on the new stage's images and nothing else.

The lower bound of every comparison: whatever it forgets is what the other strategies must keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from cssl_core.strategies.base import Strategy
from cssl_core.strategies.options import STRATEGY_OPTIONS

OPTIONS = STRATEGY_OPTIONS["finetune"]  # mask_ratio None: the model's configured ratio


class FinetuneStrategy(Strategy):
    name: ClassVar[str] = "finetune"
    keeps_raw_images: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = OPTIONS.required
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        ctx = self.context
        loss, _ = ctx.model.mae_loss(batch["image"], mask_ratio=self.options["mask_ratio"], generator=ctx.generator)
        return {"mae": loss, "total": loss}
