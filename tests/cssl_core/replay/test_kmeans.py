"""MedCoSS k-means selection: every mode represented, proportional shares, nearest-to-centroid members."""

import numpy as np
import pytest

from cssl_core.replay.kmeans import allocate_proportional, default_n_clusters, kmeans_clusters
from cssl_core.replay.selection import select_kmeans

SIZES = (400, 200, 100, 50)


def _blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated blobs of unequal sizes, in distinct directions (selection L2-normalises)."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(8)[: len(SIZES)]
    blob = np.repeat(np.arange(len(SIZES)), SIZES)
    features = centres[blob] + rng.normal(0, 0.5, (blob.size, 8))
    order = rng.permutation(blob.size)  # blobs interleaved, so index order says nothing
    return features[order].astype(np.float32), blob[order]


def test_every_blob_represented_in_proportion():
    features, blob = _blobs()
    chosen = select_kmeans(features, 75, n_clusters=4, seed=0)
    assert np.bincount(blob[chosen], minlength=4).tolist() == [40, 20, 10, 5]


def test_default_clusters_represent_every_blob_roughly_in_proportion():
    features, blob = _blobs()
    chosen = select_kmeans(features, 75, seed=0)  # K = 15 by default: blobs split into sub-clusters
    counts = np.bincount(blob[chosen], minlength=4)
    assert counts.sum() == 75 and (counts > 0).all()
    assert np.abs(counts - np.array([40, 20, 10, 5])).max() <= 2


def test_chosen_members_are_nearest_their_centroid():
    features, blob = _blobs(seed=1)
    budget, k = 75, 4
    chosen = select_kmeans(features, budget, n_clusters=k, seed=5)
    x, labels, centers = kmeans_clusters(features, k, seed=5)
    assert len({(b, c) for b, c in zip(blob, labels, strict=True)}) == k  # clusters are the blobs
    expected = []
    for c in range(k):
        members = [i for i in range(len(x)) if labels[i] == c]
        quota = round(budget * len(members) / len(x))
        dist = {i: float(np.sum((x[i].astype(np.float64) - centers[c].astype(np.float64)) ** 2)) for i in members}
        expected += sorted(members, key=lambda i: (dist[i], i))[:quota]
    assert chosen.tolist() == sorted(expected)


def test_small_cluster_keeps_one_pick():
    # 1000 near-identical samples and two tiny distinct groups: proportional shares would give the tiny ones 0.
    rng = np.random.default_rng(0)
    features = np.concatenate(
        [np.eye(4)[0] + rng.normal(0, 0.01, (1000, 4)), np.tile(np.eye(4)[1], (5, 1)), np.tile(np.eye(4)[2], (5, 1))]
    ).astype(np.float32)
    chosen = select_kmeans(features, 10, n_clusters=3, seed=0)
    assert (chosen >= 1000).sum() == 2 and ((chosen >= 1000) & (chosen < 1005)).sum() == 1


def test_allocate_proportional():
    assert allocate_proportional(75, np.array(SIZES)).tolist() == [40, 20, 10, 5]
    assert allocate_proportional(10, np.array([1000, 5, 5])).tolist() == [8, 1, 1]
    assert allocate_proportional(2, np.array([1000, 5, 5])).tolist() == [2, 0, 0]  # cannot give everyone one
    assert allocate_proportional(4, np.array([3, 0, 3])).tolist() == [2, 0, 2]
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 50, rng.integers(1, 12))
        if sizes.sum() == 0:
            continue
        budget = int(rng.integers(0, sizes.sum() + 1))
        quota = allocate_proportional(budget, sizes)
        assert quota.sum() == budget and (quota <= sizes).all() and (quota >= 0).all()
        if budget >= (sizes > 0).sum():
            assert (quota[sizes > 0] >= 1).all()
        assert np.abs(quota - budget * sizes / sizes.sum()).max() < max(2.0, (sizes > 0).sum())


def test_default_n_clusters_follows_medcoss():
    assert default_n_clusters(10_000, 500) == 100  # K = 1% of N at MedCoSS's 5% budget
    assert default_n_clusters(10_000, 2000) == 400  # larger budget: about five picks per cluster
    assert default_n_clusters(10_000, 20) == 20  # never more clusters than picks
    assert default_n_clusters(30, 3) == 1


def test_bad_n_clusters():
    features, _ = _blobs()
    with pytest.raises(ValueError, match="n_clusters"):
        select_kmeans(features, 10, n_clusters=0)
