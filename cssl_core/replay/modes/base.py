"""What a buffer privacy mode is: one object per `replay.privacy.mode`, found through `cssl_core.replay.modes`.

Each mode answers, in its own file, the four questions every part of the pipeline used to answer with its own
if-chain on the mode's name: what a stage stores (`release`), how replay reads it back (`stores_clusters`: rows
are replayed as stored, cluster statistics are sampled, cssl_core.replay.release.sample_clusters), what an
attacker who knows the mode mirrors (`attacker_token_pool`, `attacker_noise_sd`: Kerckhoffs, the knobs are in
params.yaml) and whether it acts while training (`training_penalty_weight`). Adding a mode is one file here and
one line in the registry.

numpy only at import time: ReleaseConfig validates replay.privacy before every stage command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class Released:
    """What a stage stores, row for row, and (for scoring only) the input rows behind each stored row."""

    latents: np.ndarray  # (r, tokens, dim) float16: rows, pooled rows or cluster means
    spread: np.ndarray | None  # (r, tokens, dim) float16 cluster sd (aggregate) else None
    counts: np.ndarray | None  # (r,) int32 slices per cluster (aggregate) else None
    members: list[np.ndarray]  # r arrays of positions into the input rows; never stored
    accounting: dict[str, Any] | None = None  # a formal mode's privacy spend (the buffer's ledger entry)


def singles(n: int) -> list[np.ndarray]:
    """`members` of a release that stores one row per input row."""
    return [np.array([i], dtype=np.int64) for i in range(n)]


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
        raise ValueError(
            f"replay.privacy.pool {pool} does not divide the {grid}x{grid} token grid; pick a divisor of {grid}"
        )
    x = latents.reshape(batch, grid, grid, dim).permute(0, 3, 1, 2)
    x = torch.nn.functional.avg_pool2d(x, pool)
    return x.permute(0, 2, 3, 1).reshape(batch, (grid // pool) ** 2, dim)


class BufferMode:
    """A privacy mode of a latent replay buffer. Subclasses set `name` and override what differs.

    `config` below is the validated `replay.privacy` block (cssl_core.replay.release.ReleaseConfig): a mode reads
    its own knobs from it.
    """

    name: ClassVar[str]
    stores_clusters: ClassVar[bool] = False  # cluster means/sds/counts that replay samples from, not rows
    # True: the mode releases from all the stage's training slices and picks rows itself (without looking at
    # their values); the stage's selection (kmeans, herding, ...) looks at the data, which a formal mode cannot
    releases_all_candidates: ClassVar[bool] = False

    @classmethod
    def check_knobs(cls, config: Any) -> None:
        """Refuse (ValueError, one line naming the key) a bad value of this mode's own replay.privacy knobs;
        every mode checks its knobs whichever mode is chosen, so a typo never waits for the day it is used."""

    def release(self, latents: np.ndarray, patients: np.ndarray, config: Any, seed: int) -> Released:
        """What the stage stores of its selected latents.

        Args:
            latents: (n, tokens, dim) float32, the selected rows' lower(x) in buffer order, n >= 1.
            patients: (n,) per-row patient group (for modes that must count patients; never stored).
            config: the replay.privacy block.
            seed: seeds any randomness (same seed, same buffer).
        """
        return Released(latents.astype(np.float16), None, None, singles(len(latents)))

    def attacker_token_pool(self, config: Any) -> int:
        """Token-grid pooling an attacker applies to its own latents to compare them with the stored rows."""
        return 1

    def attacker_noise_sd(self, config: Any) -> float:
        """Noise (a multiple of each channel's sd) an attacker adds to its own latents to mirror the buffer's."""
        return 0.0

    def training_penalty_weight(self, config: Any) -> float | None:
        """Weight of a penalty the mode adds to training (None: the mode acts at export only)."""
        return None

    def release_warning(self, stage: str, accounting: dict[str, Any]) -> str | None:
        """One warning line about what this stage released (printed by export), or None: a mode whose release
        is legal but weak for this stage (dp on few patients) says so instead of failing or falling back."""
        return None
