"""The registered strategy classes by params.yaml name, and `build_strategy`.

Separate from the package __init__, which imports nothing heavy (cssl_core._lazy): the classes need torch,
while their options (cssl_core.strategies.options) validate params.yaml before every stage command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cssl_core.strategies.base import Strategy
from cssl_core.strategies.der import DarkExperienceReplayStrategy
from cssl_core.strategies.er import ExperienceReplayStrategy
from cssl_core.strategies.finetune import FinetuneStrategy
from cssl_core.strategies.joint import JointStrategy
from cssl_core.strategies.latent_replay import LatentReplayStrategy
from cssl_core.strategies.medcoss import MedCoSSStrategy

# the same names, in the same order, as cssl_core.strategies.options.STRATEGY_OPTIONS
STRATEGIES: dict[str, type[Strategy]] = {
    "finetune": FinetuneStrategy,
    "joint": JointStrategy,
    "er": ExperienceReplayStrategy,
    "der": DarkExperienceReplayStrategy,
    "medcoss": MedCoSSStrategy,
    "latent_replay": LatentReplayStrategy,
}


def build_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy registered as `name`, with its options validated."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; registered: {sorted(STRATEGIES)}")
    return STRATEGIES[name](options)
