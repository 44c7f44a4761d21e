"""The buffer privacy modes of `replay.privacy.mode`, one object per mode (one file each), by name.

Everything that depends on the mode asks the mode object (cssl_core.replay.modes.base.BufferMode): export
(`release`), replay (`stores_clusters`), the audit's attacker (`attacker_token_pool`, `attacker_noise_sd`) and
training (`training_penalty_weight`). A new mode is a new file and one entry here.
"""

from __future__ import annotations

from cssl_core.replay.modes.adversarial import AdversarialMode
from cssl_core.replay.modes.aggregate import AggregateMode
from cssl_core.replay.modes.base import BufferMode, Released
from cssl_core.replay.modes.dp import DPMode
from cssl_core.replay.modes.noise import NoiseMode
from cssl_core.replay.modes.none import NoneMode
from cssl_core.replay.modes.pool import PoolMode

BUFFER_MODES: dict[str, type[BufferMode]] = {
    mode.name: mode for mode in (NoneMode, NoiseMode, PoolMode, AggregateMode, AdversarialMode, DPMode)
}


def buffer_mode(name: str) -> BufferMode:
    """The mode object of `replay.privacy.mode` `name`; a one-line ValueError naming the known ones."""
    if name not in BUFFER_MODES:
        raise ValueError(f"replay.privacy.mode must be one of {', '.join(BUFFER_MODES)}; got {name!r}")
    return BUFFER_MODES[name]()


__all__ = ["BUFFER_MODES", "BufferMode", "Released", "buffer_mode"]
