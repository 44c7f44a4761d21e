"""Probes on synthetic features whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cssl_core.evaluation import (
    attentive_probe,
    binary_metrics,
    linear_probe,
    pooled,
    token_labels_from_masks,
    token_probe,
)


def _gaussian_classes(n: int, d: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, d)  # channels of very different scales
    X[:, :3] += shift * y[:, None] * np.array([1.0, 5.0, 0.5])
    return X, y


def test_linear_probe_separates_separable_features():
    train_X, train_y = _gaussian_classes(400, 10, 4.0, seed=0)
    test_X, test_y = _gaussian_classes(400, 10, 4.0, seed=1)
    metrics = linear_probe(train_X, train_y, test_X, test_y, seed=0)
    assert set(metrics) == {"auc", "accuracy", "f1"}
    assert metrics["auc"] > 0.95 and metrics["accuracy"] > 0.85 and metrics["f1"] > 0.85


def test_linear_probe_is_at_chance_on_shuffled_labels():
    train_X, train_y = _gaussian_classes(2000, 10, 4.0, seed=0)
    test_X, test_y = _gaussian_classes(2000, 10, 4.0, seed=1)
    shuffled = np.random.default_rng(7).permutation(train_y)
    assert abs(linear_probe(train_X, shuffled, test_X, test_y, seed=0)["auc"] - 0.5) < 0.15


def test_single_class_sides_give_nan_auc_not_an_exception():
    X, y = _gaussian_classes(100, 5, 4.0, seed=0)
    one_class_test = linear_probe(X, y, X[:10], np.zeros(10, dtype=int), seed=0)
    assert math.isnan(one_class_test["auc"]) and 0.0 <= one_class_test["accuracy"] <= 1.0
    one_class_train = linear_probe(X, np.ones(100, dtype=int), X, y, seed=0)
    assert math.isnan(one_class_train["auc"])
    assert one_class_train["accuracy"] == pytest.approx(y.mean())  # predicts "positive" everywhere
    tokens = np.random.default_rng(0).normal(size=(20, 4, 3)).astype(np.float32)
    assert math.isnan(attentive_probe(tokens, np.zeros(20, dtype=int), tokens, np.arange(20) % 2, seed=0)["auc"])


def test_binary_metrics_and_label_checks():
    metrics = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    # ranking: 3 of the 4 (pos, neg) pairs are ordered correctly; threshold 0.5 gets 2 of 4 right
    assert metrics["auc"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)  # precision 1/2, recall 1/2
    with pytest.raises(ValueError, match="binary"):
        linear_probe(np.zeros((3, 2)), np.array([0, 1, 2]), np.zeros((3, 2)), np.array([0, 1, 1]), seed=0)


def _one_token_signal(n: int, tokens: int, d: int, seed: int, strength: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Positive samples carry `strength` along channel 0 in ONE token at a random position (a small lesion):
    after mean pooling the shift is strength / tokens against noise 1 / sqrt(tokens)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, tokens, d)).astype(np.float32)
    y = rng.integers(0, 2, n)
    where = rng.integers(0, tokens, n)
    positive = np.flatnonzero(y)
    x[positive, where[positive], 0] += strength
    return x, y


def test_attentive_probe_finds_a_one_token_signal_that_mean_pooling_dilutes():
    train_tokens, train_y = _one_token_signal(300, 36, 64, seed=0)
    test_tokens, test_y = _one_token_signal(300, 36, 64, seed=1)
    attentive = attentive_probe(train_tokens, train_y, test_tokens, test_y, seed=0)
    linear = linear_probe(pooled(train_tokens), train_y, pooled(test_tokens), test_y, seed=0)
    assert attentive["auc"] > 0.9
    assert linear["auc"] < attentive["auc"] - 0.2


def test_attentive_probe_at_the_demo_size_is_deterministic_and_leaves_global_state_alone():
    # (n, tokens, C) = (300, 36, 192): the tiny preset's token grid
    train_tokens, train_y = _one_token_signal(300, 36, 192, seed=2)
    test_tokens, test_y = _one_token_signal(300, 36, 192, seed=3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = attentive_probe(train_tokens, train_y, test_tokens, test_y, seed=4)
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's RNG stream is untouched
    assert torch.get_num_threads() == threads
    assert first == attentive_probe(train_tokens, train_y, test_tokens, test_y, seed=4)
    assert first["auc"] > 0.9
    shuffled = np.random.default_rng(0).permutation(train_y)
    assert abs(attentive_probe(train_tokens, shuffled, test_tokens, test_y, seed=4)["auc"] - 0.5) < 0.15


def test_token_labels_from_a_hand_made_mask():
    # 8x8 slice, 4x4 patches -> a 2x2 token grid in row-major order: [top-left, top-right, bottom-left, bottom-right]
    mask = np.zeros((1, 8, 8), dtype=np.uint8)
    mask[0, 0, 0] = 1  # 1 pixel of token 0 (1/16)
    mask[0, 4:8, 4:6] = 1  # half of token 3 (8/16)
    np.testing.assert_array_equal(token_labels_from_masks(mask, 4), [[True, False, False, True]])
    np.testing.assert_array_equal(token_labels_from_masks(mask, 4, min_fraction=0.25), [[False, False, False, True]])
    other = np.zeros((2, 8, 8), dtype=np.uint8)
    other[0, 1, 6] = 255  # top-right; any non-zero value is lesion
    other[1, 6, 1] = 1  # bottom-left
    np.testing.assert_array_equal(
        token_labels_from_masks(other, 4), [[False, True, False, False], [False, False, True, False]]
    )
    assert token_labels_from_masks(other, 4).dtype == bool
    with pytest.raises(ValueError):
        token_labels_from_masks(other, 3)


def test_token_probe_reads_lesion_tokens():
    def make(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        tokens = rng.normal(size=(150, 16, 24)).astype(np.float32)
        labels = rng.random((150, 16)) < 0.15
        tokens[labels] += 2.5 * np.eye(24, dtype=np.float32)[3]  # lesion tokens shift along one channel...
        tokens[labels] -= 1.5 * np.eye(24, dtype=np.float32)[7]  # ...and another
        return tokens, labels

    train_tokens, train_labels = make(0)
    test_tokens, test_labels = make(1)
    metrics = token_probe(train_tokens, train_labels, test_tokens, test_labels, seed=0)
    assert metrics["auc"] > 0.9
    with pytest.raises(ValueError):
        token_probe(train_tokens, train_labels[:, :4], test_tokens, test_labels, seed=0)
