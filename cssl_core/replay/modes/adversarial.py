"""`adversarial`: stored like `none`; the lower encoder was trained to be harder to invert."""

from __future__ import annotations

from typing import Any, ClassVar

from cssl_core.replay.modes.base import BufferMode


class AdversarialMode(BufferMode):
    """Stores rows as they are; the difference is upstream: pretrain@<stage> adds a distance-correlation penalty
    (cssl_core.strategies.nopeek_penalty, weight `adversarial_weight`) between each slice and its lower(x). The attacker
    holds the same penalised encoder, so it needs nothing mode-specific."""

    name: ClassVar[str] = "adversarial"

    def training_penalty_weight(self, config: Any) -> float | None:
        return float(config.adversarial_weight)
