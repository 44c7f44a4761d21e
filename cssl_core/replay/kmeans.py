"""MedCoSS buffer selection: k-means on pooled features, keep the samples nearest each centroid.

Clustering makes the buffer diverse (every mode of the stage gets a share), taking the samples nearest a
centroid makes it representative (no outliers stand in for a cluster). MedCoSS clusters with K = 1% of N
and keeps about 5% of N, i.e. about five samples per cluster; `default_n_clusters` keeps that ratio for
other budgets. Features are L2-normalised first so that clusters follow direction (what cosine-trained
encoders encode) rather than feature norm.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from cssl_core.replay.coverage import l2_normalise

PER_CLUSTER = 5  # MedCoSS: 5% kept / K = 1% of N


def default_n_clusters(n: int, budget: int) -> int:
    """K = max(round(1% of n), ceil(budget / 5)), capped at the budget, at least 1.

    1% of n is MedCoSS's K. When the budget is above MedCoSS's 5%, ceil(budget / 5) keeps clusters at
    about five picks each, so a large budget buys more diversity instead of more samples near a few
    centroids. The cap at the budget lets every cluster be represented.
    """
    return max(1, min(budget, max(round(0.01 * n), math.ceil(budget / PER_CLUSTER))))


def kmeans_clusters(
    features: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int = 4, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit seeded k-means on L2-normalised features; return (normalised features, labels, centroids).

    scikit-learn is imported here, not with the module: the selectors' signatures (cssl_core.replay.selection)
    validate replay.selection_options before every stage command, and importing it takes about a second.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    x = l2_normalise(features)
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters must be in [1, {x.shape[0]}], got {n_clusters}")
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (duplicated slices) is handled below by skipping empty clusters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    return x, km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


def allocate_proportional(budget: int, sizes: np.ndarray) -> np.ndarray:
    """Split `budget` over clusters in proportion to their sizes (largest remainder, exact integer arithmetic).

    Every non-empty cluster gets at least one pick when the budget allows: a small cluster is exactly the
    rare mode a buffer must not lose. The pick a small cluster gains comes from the cluster most above its
    exact share. No cluster gets more picks than members.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= budget <= total:
        raise ValueError(f"budget {budget} must be in [0, {total}]")
    quota = budget * sizes // total
    remainder = budget * sizes % total
    leftover = budget - int(quota.sum())
    order = np.lexsort((np.arange(sizes.size), -remainder))
    quota[order[:leftover]] += 1

    nonempty = sizes > 0
    if budget >= int(nonempty.sum()):
        exact = budget * sizes / total
        for c in np.flatnonzero(nonempty & (quota == 0)):
            surplus = np.where(quota > 1, quota - exact, -np.inf)
            donor = int(np.argmax(surplus))
            quota[donor] -= 1
            quota[c] += 1
    return quota


def select_nearest_centroids(x: np.ndarray, labels: np.ndarray, centers: np.ndarray, budget: int) -> np.ndarray:
    """Per cluster, the `quota` members nearest the centroid (ties: lower index); sorted int64 indices."""
    n_clusters = centers.shape[0]
    sizes = np.bincount(labels, minlength=n_clusters)
    quota = allocate_proportional(budget, sizes)
    dist = np.sum((x.astype(np.float64) - centers[labels].astype(np.float64)) ** 2, axis=1)
    order = np.lexsort((np.arange(x.shape[0]), dist, labels))  # by cluster, then distance, then index
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    chosen = [order[starts[c] : starts[c] + quota[c]] for c in range(n_clusters) if quota[c]]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
