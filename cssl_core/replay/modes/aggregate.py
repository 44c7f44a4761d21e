"""`aggregate`: no individual latent; only per-cluster token means, sds and sizes, sampled from at replay."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cssl_core.replay.modes.base import BufferMode, Released


class AggregateMode(BufferMode):
    """Clusters the rows (k-means), merges clusters below `min_cluster_size` slices or `min_patients` patients into
    their nearest neighbour, and stores each cluster's token mean and sd (diagonal) and its size; replay draws
    synthetic latents from N(mean, sd^2) (cssl_core.replay.release.sample_clusters). The attacker needs only the
    shared model; what it attacks are the means. Statistics of a few patients still reveal membership
    (docs/privacy.md), so this mode is measured, not assumed private."""

    name: ClassVar[str] = "aggregate"
    stores_clusters: ClassVar[bool] = True

    def release(self, latents: np.ndarray, patients: np.ndarray, config: Any, seed: int) -> Released:
        return aggregate(latents, np.asarray(patients), config.min_cluster_size, config.min_patients, seed)


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
            f"replay.privacy: mode aggregate needs at least min_cluster_size={min_size} slices from "
            f"min_patients={min_patients} patients, but the stage selected {n} slices from {distinct} patients; "
            "raise replay.budget or lower them"
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
