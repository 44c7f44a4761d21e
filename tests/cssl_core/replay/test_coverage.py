"""Coverage (dynamic memory) and selective pruning, against a slow reference that states the rule plainly."""

import math

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

from cssl_core.replay.coverage import cosine_similarity_matrix
from cssl_core.replay.selection import select_coverage, select_selective


def reference_prune(features: np.ndarray, budget: int, protected: set[int] = frozenset()) -> list[int]:
    """While too many remain: drop the unprotected sample whose most similar other remaining sample is most
    similar (first index on ties). O(n^3); the similarity values are the module's (exactly symmetric)."""
    sim = cosine_similarity_matrix(features)
    alive = list(range(len(features)))
    while len(alive) > budget:
        drop, best = None, -math.inf
        for i in alive:
            if i in protected:
                continue
            nearest = max(float(sim[i, j]) for j in alive if j != i)
            if drop is None or nearest > best:
                drop, best = i, nearest
        alive.remove(drop)
    return alive


def _near_duplicates(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5 groups of 40 near-duplicates (noise 1e-3) and 5 distinct points, shuffled."""
    rng = np.random.default_rng(seed)
    bases = rng.standard_normal((10, 64))
    group = np.concatenate([np.repeat(np.arange(5), 40), np.arange(5, 10)])
    features = bases[group] + np.where(group < 5, 1e-3, 0.0)[:, None] * rng.standard_normal((group.size, 64))
    order = rng.permutation(group.size)
    return features[order].astype(np.float32), group[order], np.flatnonzero(group[order] >= 5)


def test_similarity_matrix_is_exactly_symmetric_cosine():
    features = np.random.default_rng(0).standard_normal((2100, 7)).astype(np.float32)  # spans several blocks
    sim = cosine_similarity_matrix(features)
    assert np.array_equal(sim, sim.T)
    assert np.all(np.isneginf(np.diag(sim)))
    off = ~np.eye(len(features), dtype=bool)
    np.testing.assert_allclose(sim[off], cosine_similarity(features.astype(np.float64))[off], atol=1e-5)


def test_distinct_points_survive_and_duplicates_are_pruned():
    features, group, distinct = _near_duplicates()
    chosen = select_coverage(features, 10)
    assert set(distinct) <= set(chosen)
    assert sorted(group[chosen].tolist()) == list(range(10))  # one survivor per duplicate group


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [1, 5, 23, 59])
def test_coverage_equals_reference(seed, budget):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((60, 5)).astype(np.float32)
    assert select_coverage(features, budget).tolist() == reference_prune(features, budget)


@pytest.mark.parametrize("budget", [3, 10, 25])
def test_coverage_equals_reference_with_exact_ties(budget):
    rng = np.random.default_rng(1)
    features = rng.integers(-1, 2, (50, 3)).astype(np.float32)  # many exact duplicates and equal similarities
    features[features.sum(axis=1) == 0] += 0.5  # no zero rows
    assert select_coverage(features, budget).tolist() == reference_prune(features, budget)


def test_selective_requires_losses():
    features, _, _ = _near_duplicates()
    with pytest.raises(ValueError, match="needs per-sample pretext losses"):
        select_selective(features, 10)
    with pytest.raises(ValueError, match="losses must have shape"):
        select_selective(features, 10, losses=np.ones(3))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("budget", [20, 40, 59])
def test_selective_keeps_top_quarter_and_equals_reference(seed, budget):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((60, 5)).astype(np.float32)
    losses = rng.random(60)
    top = set(np.argsort(-losses)[:15].tolist())
    chosen = select_selective(features, budget, losses=losses)
    assert top <= set(chosen.tolist())
    assert chosen.tolist() == reference_prune(features, budget, protected=top)


def test_selective_protects_redundant_hard_samples():
    features, group, _ = _near_duplicates()
    losses = np.where(group == 0, 10.0, 0.0) + np.linspace(0, 1e-3, group.size)  # group 0 is the hard one
    chosen = select_selective(features, 60, losses=losses)
    hardest = np.argsort(-losses)[: math.ceil(group.size / 4)]
    assert set(hardest.tolist()) <= set(chosen.tolist())  # 40 duplicates coverage alone would cut to one
    assert np.sum(group[select_coverage(features, 60)] == 0) < 40


def test_selective_when_the_protected_set_exceeds_the_budget():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((100, 8)).astype(np.float32)
    losses = rng.random(100)
    chosen = select_selective(features, 10, losses=losses)  # 25 protected > 10
    assert chosen.tolist() == sorted(np.argsort(-losses)[:10].tolist())
