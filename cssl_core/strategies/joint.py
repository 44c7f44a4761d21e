"""Joint training (upper bound): every earlier slice stays available and is replayed in proportion.

"All data at once" in a stage-wise runner: the buffer holds every slice of the earlier stages (budget 1.0),
and each step replays a batch whose size matches the buffer's share of all data, so that over an epoch
old and new slices are seen at the rate a single shuffled pass over their union would see them. Not
private (raw images of every cohort), and the number to beat rather than a method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from cssl_core.strategies.er import ExperienceReplayStrategy
from cssl_core.strategies.options import STRATEGY_OPTIONS, check_joint_options

OPTIONS = STRATEGY_OPTIONS["joint"]


class JointStrategy(ExperienceReplayStrategy):
    """Options: `replay_batch_size` (None = proportional), `max_replay_batch` (cap on the proportional
    size, bounds step memory), `new_stage_size` (slices in the new stage's train set; None = the size the
    runner gives in the stage context, or, without one, an average earlier stage's)."""

    name: ClassVar[str] = "joint"
    keeps_raw_images: ClassVar[bool] = True
    buffer_kind: ClassVar[str] = OPTIONS.buffer_kind
    buffer_budget: ClassVar[float | int | None] = 1.0
    default_options: ClassVar[Mapping[str, Any]] = OPTIONS.defaults

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_joint_options(self.options)

    def replay_batch_size(self, batch_size: int) -> int:
        if self.options["replay_batch_size"] is not None:
            return int(self.options["replay_batch_size"])
        n_buffer = len(self.buffer)
        n_new = self.options["new_stage_size"]
        if n_new is None and self._context is not None:
            n_new = self._context.new_stage_size
        if n_new is None:
            n_new = n_buffer / max(1, len(set(self.buffer.stage.tolist())))
        size = math.ceil(batch_size * n_buffer / n_new)
        return max(1, min(size, int(self.options["max_replay_batch"])))
