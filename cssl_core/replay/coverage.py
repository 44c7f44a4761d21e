"""Coverage pruning: OnlineLearning's dynamic (max-coverage) memory and its selective variant.

The buffer should cover the stage's feature space, not its densest mode: a sample whose nearest remaining
neighbour is very similar adds little that the neighbour does not already give, so it is the first to go.
Repeating "drop the sample most similar (cosine) to another remaining sample" leaves a spread-out subset
in which near-duplicates are gone and isolated samples survive.

Cost. The naive loop recomputes every nearest neighbour after each drop (O(n^3)). Here each sample keeps
its nearest remaining neighbour; a drop only invalidates the rows that pointed at the dropped sample, and
only those are recomputed. Memory is one float32 n x n similarity matrix (1.6 GB at n = 20k); beyond that,
subsample first or cluster (kmeans).

Determinism. The similarity matrix is made exactly symmetric, and ties are broken by the lowest index
(the sample dropped first is the lowest-index one among equally redundant samples), so the result equals
the naive reference bit for bit and does not depend on thread counts.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1024


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Unit rows in float32; an all-zero row stays zero (similarity 0 to everything) instead of NaN."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def cosine_similarity_matrix(features: np.ndarray) -> np.ndarray:
    """Exactly symmetric float32 cosine similarities with -inf on the diagonal (a sample is not its own neighbour).

    BLAS does not promise sim[i, j] == sim[j, i] to the last bit; the upper triangle is copied onto the lower
    one block by block (no extra n x n temporary) so a pair is equally similar seen from either side.
    """
    x = l2_normalise(features)
    sim = x @ x.T
    n = sim.shape[0]
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = sim[start:stop, start:stop]
        upper = np.triu(block, 1)
        block[...] = upper + upper.T
        if start:
            sim[start:stop, :start] = sim[:start, start:stop].T
    np.fill_diagonal(sim, -np.inf)
    return sim


def prune_by_coverage(sim: np.ndarray, budget: int, protected: np.ndarray | None = None) -> np.ndarray:
    """Indices (sorted, int64) left after dropping the most redundant unprotected sample until `budget` remain.

    `sim` is a symmetric similarity matrix with -inf on the diagonal (see `cosine_similarity_matrix`); it is
    not modified. Protected samples are never dropped but still count as neighbours: a sample close to a
    protected one is redundant too. The caller guarantees fewer than `budget` protected samples.
    """
    n = sim.shape[0]
    if budget >= n:
        return np.arange(n, dtype=np.int64)
    protected = np.zeros(n, dtype=bool) if protected is None else np.asarray(protected, dtype=bool)
    if int(protected.sum()) >= budget:
        raise ValueError(f"{int(protected.sum())} protected samples do not fit a budget of {budget}")

    alive = np.ones(n, dtype=bool)
    nn_idx = np.argmax(sim, axis=1)
    nn_sim = sim[np.arange(n), nn_idx].astype(np.float64)
    candidate = np.where(protected, -np.inf, nn_sim)
    for _ in range(n - budget):
        drop = int(np.argmax(candidate))
        alive[drop] = False
        candidate[drop] = -np.inf
        stale = np.flatnonzero((nn_idx == drop) & alive)
        if stale.size:
            rows = np.where(alive[None, :], sim[stale], -np.inf)
            best = np.argmax(rows, axis=1)
            nn_idx[stale] = best
            nn_sim[stale] = rows[np.arange(stale.size), best]
            candidate[stale] = np.where(protected[stale], -np.inf, nn_sim[stale])
    return np.flatnonzero(alive).astype(np.int64)


def top_by_loss(losses: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest losses (ties: lower index first), unsorted by index."""
    order = np.lexsort((np.arange(losses.size), -np.asarray(losses, dtype=np.float64)))
    return order[:count].astype(np.int64)
