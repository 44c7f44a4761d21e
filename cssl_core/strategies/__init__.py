"""Continual strategies, one file each. Adding one = its file + one line in STRATEGIES + a params block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cssl_core.strategies.base import StageContext, Strategy
from cssl_core.strategies.finetune import FinetuneStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "finetune": FinetuneStrategy,
}


def build_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy registered as `name`, with its options validated."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; registered: {sorted(STRATEGIES)}")
    return STRATEGIES[name](options)


__all__ = ["STRATEGIES", "FinetuneStrategy", "StageContext", "Strategy", "build_strategy"]
