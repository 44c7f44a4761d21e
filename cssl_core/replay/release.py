"""What a latent buffer releases of the latents a stage selected, under the privacy mode `replay.privacy` names.

A stored latent z = lower(x) can be inverted back into its slice almost exactly by anyone holding the shared
model (docs/privacy.md), so the only levers are on what is stored. Each mode trades replay utility for privacy,
and each is measured, not assumed: the audit stage attacks whatever was released, with an attacker who knows the
mode and its knobs (they are in params.yaml), and `cssl compare` puts the audit beside the forgetting.

The modes themselves (none, noise, pool, aggregate, adversarial) are one object each in cssl_core/replay/modes/;
this module holds their shared knobs (ReleaseConfig), the one entry point export calls (`release`) and what
replay does with cluster statistics (`sample_clusters`).

`members` records which input rows each released row came from. It is for the audit's scoring only and is never
written to a buffer.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cssl_core.known_keys import reject_unknown_keys
from cssl_core.replay.modes import BUFFER_MODES, buffer_mode
from cssl_core.replay.modes.aggregate import aggregate
from cssl_core.replay.modes.base import Released, pool_tokens

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: ReleaseConfig validates replay.privacy before every stage
# command (cssl_core.config), and most stages never touch a tensor.

MODES = tuple(BUFFER_MODES)
KEY = "replay.privacy"
__all__ = ["KEY", "MODES", "ReleaseConfig", "Released", "aggregate", "keep_labels", "pool_tokens", "release",
           "sample_clusters"]  # fmt: skip


@dataclass(frozen=True)
class ReleaseConfig:
    """`replay.privacy` of params.yaml, validated when read (a typo must not silently mean `none`)."""

    mode: str = "none"
    noise_sd: float = 0.5
    pool: int = 2
    min_cluster_size: int = 8
    min_patients: int = 3
    adversarial_weight: float = 1.0
    dp_epsilon: float = 8.0  # dp: epsilon spent per stage (unit: patient)
    dp_delta: float | None = None  # dp: None = 0.1 / the stage's training slices
    dp_clip: float = 1.0  # dp: per-channel RMS bound of a token (token L2 norm <= dp_clip x sqrt(channels))
    dp_max_slices_per_patient: int = 4  # dp: contribution bound of one patient
    dp_clusters: int = 1  # dp: released clusters (more: noisy Lloyd steps, each spending budget)
    dp_iterations: int = 2  # dp: Lloyd steps when dp_clusters > 1

    def __post_init__(self) -> None:
        buffer_mode(self.mode)  # an unknown mode is a one-line error naming the known ones
        for mode in BUFFER_MODES.values():
            mode.check_knobs(self)
        if isinstance(self.noise_sd, bool) or not isinstance(self.noise_sd, numbers.Real) or not self.noise_sd > 0:
            raise ValueError(
                f"{KEY}.noise_sd must be a number > 0 (a multiple of each channel's sd); got {self.noise_sd!r}"
            )
        for name, low in (("pool", 2), ("min_cluster_size", 2), ("min_patients", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{KEY}.{name} must be an integer >= {low}; got {value!r}")
        weight = self.adversarial_weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight > 0:
            raise ValueError(f"{KEY}.adversarial_weight must be a number > 0; got {weight!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ReleaseConfig:
        given = dict(values or {})
        reject_unknown_keys(given, cls, f"{KEY}: unknown key(s)", error=ValueError, field_order=True)
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def token_pool(self) -> int:
        """Token-grid pooling an attacker must apply to its own latents to compare them with stored rows."""
        return buffer_mode(self.mode).attacker_token_pool(self)

    @property
    def attacker_noise_sd(self) -> float:
        """Noise an attacker adds to its own latents to mirror the buffer's (a multiple of each channel's sd)."""
        return buffer_mode(self.mode).attacker_noise_sd(self)

    @property
    def training_penalty_weight(self) -> float | None:
        """Weight of the penalty the mode adds to training; None when it acts at export only."""
        return buffer_mode(self.mode).training_penalty_weight(self)


def keep_labels(replay: Mapping[str, Any]) -> bool:
    """`replay.keep_labels` (default false): replay never reads labels, so a buffer keeps them only when asked.

    Beside ReleaseConfig because it too decides what a buffer gives away (export@<stage> and the whole-params
    check both read it from here).
    """
    value = replay.get("keep_labels", False)
    if not isinstance(value, bool):
        raise ValueError(f"params.yaml replay.keep_labels must be true or false, got {value!r}")
    return value


def release(latents: np.ndarray, patients: np.ndarray, config: ReleaseConfig, seed: int) -> Released:
    """Apply the privacy mode to a stage's selected latents.

    Args:
        latents: (n, tokens, dim) float, the selected rows' lower(x) in buffer order.
        patients: (n,) any hashable per-row patient group (used by `aggregate` only, never stored).
        config: the mode and its knobs.
        seed: seeds the noise and the clustering (same seed, same buffer).
    """
    z = np.asarray(latents, dtype=np.float32)
    if z.ndim != 3 or not len(z):
        raise ValueError(f"release needs latents of shape (n, tokens, dim) with n >= 1, got {z.shape}")
    return buffer_mode(config.mode).release(z, np.asarray(patients), config, seed)


def sample_clusters(
    means: np.ndarray, spread: np.ndarray, counts: np.ndarray, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Synthetic latents for replay: counts[i] draws from N(means[i], diag(spread[i]**2)), float16 (sum(counts), N, C).

    Why sample instead of replaying the means: the spread is part of what the old stage looked like, and a
    cluster of 8 slices replayed as one point would shrink the old distribution the distillation protects.
    """
    import torch

    mean = torch.from_numpy(np.asarray(means, dtype=np.float32))
    sd = torch.from_numpy(np.asarray(spread, dtype=np.float32))
    index = torch.repeat_interleave(torch.arange(len(mean)), torch.from_numpy(np.asarray(counts, dtype=np.int64)))
    noise = torch.randn((len(index), *mean.shape[1:]), generator=generator)
    return (mean[index] + sd[index] * noise).half()
