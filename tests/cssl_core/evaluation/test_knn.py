"""The kNN probe on synthetic pooled features whose answer is known: separable classes, shuffled labels,
imbalance, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cssl_core.evaluation import KNN_K, knn_probe


def _gaussian_classes(n: int, d: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two unit-variance Gaussian clusters `shift` apart on each of 4 of `d` channels, then every channel
    rescaled by 0.01..100: unstandardised, the large noise channels would decide every distance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d))
    X[:, :4] += shift * y[:, None]
    return X * np.random.default_rng(0).uniform(0.01, 100.0, d), y


def test_knn_reaches_auc_near_one_on_separable_features():
    # 5 draws, clusters 6 sd apart (3 per channel on 4 of 16 channels): measured AUC >= 0.99 in every draw
    aucs = []
    for seed in range(5):
        train_X, train_y = _gaussian_classes(300, 16, 3.0, seed=2 * seed)
        test_X, test_y = _gaussian_classes(300, 16, 3.0, seed=2 * seed + 1)
        metrics = knn_probe(train_X, train_y, test_X, test_y)
        assert set(metrics) == {"auc", "accuracy", "f1"}
        aucs.append(metrics["auc"])
    assert min(aucs) > 0.98, aucs


def test_knn_is_at_chance_on_shuffled_labels():
    # On clustered features one draw is far from 0.5 more often than iid noise would be (every test slice of a
    # cluster reads the same chance surplus of shuffled positives there): measured sd 0.074 over these 20
    # draws (0.39-0.66), mean 0.501. The mean of 20 has sd ~0.017; tolerance 0.05, about 3 sd.
    aucs = []
    for seed in range(20):
        train_X, train_y = _gaussian_classes(400, 16, 3.0, seed=100 + seed)
        test_X, test_y = _gaussian_classes(400, 16, 3.0, seed=200 + seed)
        shuffled = np.random.default_rng(seed).permutation(train_y)
        aucs.append(knn_probe(train_X, shuffled, test_X, test_y)["auc"])
    assert abs(np.mean(aucs) - 0.5) < 0.05, aucs


def test_knn_scores_are_class_balanced_and_deterministic():
    # ~10% positives: a plain vote share would put almost every positive below 0.5 (k=20 neighbours, ~2
    # positive); the class-balanced share does not. Measured F1 0.69 at AUC 0.95.
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    X = rng.normal(size=(400, 8))
    X[:, 0] += 3.0 * y
    train, test = np.arange(0, 400, 2), np.arange(1, 400, 2)
    first = knn_probe(X[train], y[train], X[test], y[test])
    assert first == knn_probe(X[train], y[train], X[test], y[test])  # nothing random: identical numbers
    assert first["auc"] > 0.9 and first["f1"] > 0.5


def test_knn_with_fewer_training_rows_than_k_and_single_class_sides():
    X, y = _gaussian_classes(12, 8, 6.0, seed=3)
    assert len(y) < KNN_K
    # k shrinks to the training side, and the similarity weights still rank: a plain vote over all 12 would
    # give every test slice the same score (AUC 0.5)
    assert knn_probe(X, y, X, y)["auc"] > 0.9
    single = knn_probe(X[y == 0], y[y == 0], X, y)
    assert math.isnan(single["auc"]) and single["accuracy"] == pytest.approx(np.mean(y == 0))
    with pytest.raises(ValueError, match="k must be >= 1 and temperature > 0"):
        knn_probe(X, y, X, y, k=0)
