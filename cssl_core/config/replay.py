"""`replay`: how export@<stage> picks and stores a stage's buffer.

The selector's options are checked against the selector's own signature, and against the selector the chosen
strategy forces (medcoss always uses kmeans): export passes `selection_options` to whichever selector runs,
so an option only `selective` knows breaks export under medcoss.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cssl_core.config import checks
from cssl_core.config.errors import ConfigError, reused

REPLAY_KEYS = ("selection", "budget", "selection_options", "keep_labels", "privacy")
PASSED_BY_EXPORT = ("losses", "seed")  # select() passes these itself; an option of the same name would clash


@dataclass(frozen=True)
class ReplayConfig:
    selection: str
    budget: int | float
    selection_options: Mapping[str, Any]
    keep_labels: bool
    privacy: Any  # cssl_core.replay.release.ReleaseConfig of replay.privacy


def selector_options(selection: str) -> dict[str, Any]:
    """Keyword options a selector accepts, with their annotated types."""
    from cssl_core.replay.selection import SELECTORS

    selector = SELECTORS[selection]
    hints = checks.annotations(selector)
    return {
        name: hints.get(name, Any)
        for name, parameter in inspect.signature(selector).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in PASSED_BY_EXPORT
    }


def _check_options(selection: str, options: Mapping[str, Any], forced_by: str | None = None) -> None:
    accepted = selector_options(selection)
    for key in options:
        if key not in accepted:
            who = f"strategy {forced_by} always selects with {selection}" if forced_by else f"selector {selection}"
            takes = ", ".join(accepted) or "no options"
            raise ConfigError(f"replay.selection_options.{key}", options[key], f"{who}, which takes {takes}")
    checks.check_fields("replay.selection_options", options, accepted)


def parse_replay(block: Any, strategy: str, strategy_options: Mapping[str, Any]) -> ReplayConfig:
    from cssl_core.replay.release import ReleaseConfig, keep_labels
    from cssl_core.replay.selection import SELECTORS, resolve_budget
    from cssl_core.strategies.options import strategy_options as option_spec

    replay = checks.mapping("replay", block)
    checks.keys("replay", replay, REPLAY_KEYS, required=("selection", "budget"))
    selection = checks.choice("replay.selection", replay["selection"], SELECTORS)
    budget = replay["budget"]
    with reused("replay", {"budget": budget}):
        resolve_budget(budget, 1)  # its type and range rules; the count itself depends on the stage
    options = checks.mapping("replay.selection_options", replay.get("selection_options"), optional=True)
    _check_options(selection, options)
    spec = option_spec(strategy)
    resolved = spec.validate(strategy_options)
    replays = spec.replays(resolved)
    forced = spec.buffer_selection
    if replays and forced is not None and forced != selection:
        _check_options(forced, options, forced_by=strategy)
    with reused("replay", replay):
        labels = keep_labels(replay)
    privacy = checks.mapping("replay.privacy", replay.get("privacy"), optional=True)
    checks.check_fields("replay.privacy", privacy, checks.annotations(ReleaseConfig))
    with reused("replay.privacy", privacy):
        release = ReleaseConfig.from_dict(dict(privacy))
    decoder_weight = resolved.get("lambda_decoder", 0.0)
    if replays and decoder_weight > 0 and release.mode == "pool" and release.pool > 1:
        # found here, before stage 1 trains, rather than when stage 2 opens the pooled buffer
        raise ConfigError(
            f"ssl.strategies.{strategy}.lambda_decoder",
            decoder_weight,
            "decoder distillation needs a latent of every patch, and replay.privacy.mode pool stores pooled tokens:"
            " set it to 0 or choose another buffer mode",
        )
    return ReplayConfig(selection, budget, MappingProxyType(dict(options)), labels, release)
