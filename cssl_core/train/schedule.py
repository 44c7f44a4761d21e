"""Per-step learning rate: linear warm-up, then cosine decay to `final_ratio` of the base rate.

Per step rather than per epoch so that short CPU stages (a few epochs) still get a smooth schedule. The
factor is a small picklable object, not a lambda, so LambdaLR's state_dict round-trips it in a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class WarmupCosine:
    """factor(step) for step = 0, 1, ...: (step + 1) / warmup during warm-up (so step 0 already moves),
    then final + (1 - final) * (1 + cos(pi * progress)) / 2, and `final` after `total_steps`."""

    warmup_steps: int
    total_steps: int
    final_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"need 0 <= warmup_steps <= total_steps, total >= 1; got {self}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, final_ratio: float = 0.0) -> LambdaLR:
    """A LambdaLR stepped once per optimiser step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, final_ratio))
