"""Naive sequential fine-tuning: the MAE loss on the new stage's images and nothing else.

The lower bound of every comparison: whatever it forgets is what the other strategies must keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from cssl_core.strategies.base import Strategy


class FinetuneStrategy(Strategy):
    name: ClassVar[str] = "finetune"
    keeps_raw_images: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = ()
    default_options: ClassVar[Mapping[str, Any]] = {"mask_ratio": None}  # None: the model's configured ratio

    def observe(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        ctx = self.context
        loss, _ = ctx.model.mae_loss(batch["image"], mask_ratio=self.options["mask_ratio"], generator=ctx.generator)
        return {"mae": loss, "total": loss}
