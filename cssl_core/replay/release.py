"""What a latent buffer releases of the latents a stage selected: the privacy modes of `replay.privacy`.

A stored latent z = lower(x) can be inverted back into its slice almost exactly by anyone holding the shared
model (docs/privacy.md), so the only levers are on what is stored. Each mode trades replay utility for privacy,
and each is measured, not assumed: the audit stage attacks whatever this module released, with an attacker who
knows the mode and its knobs (they are in params.yaml), and `cssl compare` puts the audit beside the forgetting.

- `none`: the latents as selected.
- `noise`: Gaussian noise, sd = `noise_sd` x each channel's sd over the stored rows and tokens.
- `pool`: tokens averaged over `pool` x `pool` blocks of the token grid; the upper blocks replay fewer tokens
  (they take any token count: position lives in the tokens since the patch embedding).
- `aggregate`: no individual latent. The rows are clustered (k-means), clusters below `min_cluster_size`
  slices or `min_patients` patients are merged into their nearest neighbour, and only each cluster's token
  mean and sd (diagonal) and its size are stored; replay samples synthetic latents from them.
- `adversarial`: stored like `none`; the difference is upstream: the lower encoder was trained with a
  distance-correlation penalty (cssl_core/strategies, tasks/pretrain.py) that makes its output harder to invert.

`members` records which input rows each released row came from. It is for the audit's scoring only and is never
written to a buffer.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: ReleaseConfig validates replay.privacy before every stage
# command (cssl_core.config), and most stages never touch a tensor.

MODES = ("none", "noise", "pool", "aggregate", "adversarial")
KEY = "replay.privacy"


@dataclass(frozen=True)
class ReleaseConfig:
    """`replay.privacy` of params.yaml, validated when read (a typo must not silently mean `none`)."""

    mode: str = "none"
    noise_sd: float = 0.5
    pool: int = 2
    min_cluster_size: int = 8
    min_patients: int = 3
    adversarial_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"{KEY}.mode must be one of {', '.join(MODES)}; got {self.mode!r}")
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
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{KEY}: unknown key(s) {unknown}; known: {known}")
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def token_pool(self) -> int:
        """Token-grid pooling an attacker must apply to its own latents to compare them with stored rows."""
        return self.pool if self.mode == "pool" else 1


def keep_labels(replay: Mapping[str, Any]) -> bool:
    """`replay.keep_labels` (default false): replay never reads labels, so a buffer keeps them only when asked.

    Beside ReleaseConfig because it too decides what a buffer gives away (export@<stage> and the whole-params
    check both read it from here).
    """
    value = replay.get("keep_labels", False)
    if not isinstance(value, bool):
        raise ValueError(f"params.yaml replay.keep_labels must be true or false, got {value!r}")
    return value


@dataclass
class Released:
    """What a stage stores, row for row, and (for scoring only) the input rows behind each stored row."""

    latents: np.ndarray  # (r, tokens, dim) float16: rows, pooled rows or cluster means
    spread: np.ndarray | None  # (r, tokens, dim) float16 cluster sd (aggregate) else None
    counts: np.ndarray | None  # (r,) int32 slices per cluster (aggregate) else None
    members: list[np.ndarray]  # r arrays of positions into the input rows; never stored


def pool_tokens(latents: torch.Tensor, pool: int) -> torch.Tensor:
    """(B, g*g, C) -> (B, (g/pool)**2, C): mean over pool x pool blocks of the square token grid (differentiable).

    Args:
        latents: (B, N, C) with N a square whose side is divisible by `pool`.
    """
    import torch

    if pool == 1:
        return latents
    batch, tokens, dim = latents.shape
    grid = int(round(tokens**0.5))
    if grid * grid != tokens or grid % pool:
        raise ValueError(f"{KEY}.pool {pool} does not divide the {grid}x{grid} token grid; pick a divisor of {grid}")
    x = latents.reshape(batch, grid, grid, dim).permute(0, 3, 1, 2)
    x = torch.nn.functional.avg_pool2d(x, pool)
    return x.permute(0, 2, 3, 1).reshape(batch, (grid // pool) ** 2, dim)


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
    singles = [np.array([i], dtype=np.int64) for i in range(len(z))]
    if config.mode in ("none", "adversarial"):
        return Released(z.astype(np.float16), None, None, singles)
    if config.mode == "noise":
        channel_sd = z.std(axis=(0, 1), keepdims=True)
        noise = np.random.default_rng([seed, 1]).standard_normal(z.shape).astype(np.float32)
        return Released((z + config.noise_sd * channel_sd * noise).astype(np.float16), None, None, singles)
    if config.mode == "pool":
        import torch

        pooled = pool_tokens(torch.from_numpy(z), config.pool).numpy()
        return Released(pooled.astype(np.float16), None, None, singles)
    return aggregate(z, np.asarray(patients), config.min_cluster_size, config.min_patients, seed)


def aggregate(latents: np.ndarray, patients: np.ndarray, min_size: int, min_patients: int, seed: int) -> Released:
    """Cluster statistics only: k-means on the flattened latents, then merge every cluster that has fewer than
    `min_size` slices or `min_patients` distinct patients into its nearest neighbour (by centroid), smallest first,
    until all clusters pass. Refuses data that cannot make one cluster of that size.
    """
    from sklearn.cluster import KMeans

    n = len(latents)
    if patients.shape != (n,):
        raise ValueError(f"patients must give one group per row: shape ({n},), got {patients.shape}")
    distinct = len(set(patients.tolist()))
    if n < min_size or distinct < min_patients:
        raise ValueError(
            f"{KEY}: mode aggregate needs at least min_cluster_size={min_size} slices from min_patients={min_patients} "
            f"patients, but the stage selected {n} slices from {distinct} patients; raise replay.budget or lower them"
        )
    flat = latents.reshape(n, -1)
    k = max(1, n // min_size)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(flat) if k > 1 else np.zeros(n, np.int64)
    groups = [np.flatnonzero(labels == c) for c in range(k)]
    groups = [g for g in groups if g.size]

    def failing(group: np.ndarray) -> bool:
        return group.size < min_size or len(set(patients[group].tolist())) < min_patients

    while len(groups) > 1 and any(failing(g) for g in groups):
        worst = min((g for g in groups if failing(g)), key=lambda g: (g.size, g[0]))
        rest = [g for g in groups if g is not worst]
        centre = flat[worst].mean(axis=0)
        nearest = min(range(len(rest)), key=lambda j: float(np.square(flat[rest[j]].mean(axis=0) - centre).sum()))
        rest[nearest] = np.sort(np.concatenate([rest[nearest], worst]))
        groups = rest
    groups.sort(key=lambda g: int(g[0]))
    means = np.stack([latents[g].mean(axis=0) for g in groups])
    spread = np.stack([latents[g].std(axis=0) for g in groups])
    counts = np.array([g.size for g in groups], dtype=np.int32)
    return Released(means.astype(np.float16), spread.astype(np.float16), counts, groups)


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
