"""Contract shared by every selector, and budget resolution."""

import math

import numpy as np
import pytest

from cssl_core.replay.selection import SELECTORS, budget_exceeds, resolve_budget, select


def _data(n: int = 200, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.random(n)


@pytest.mark.parametrize("method", sorted(SELECTORS))
@pytest.mark.parametrize("budget", [1, 37, 120, 199])
def test_exact_budget_unique_sorted_in_range(method, budget):
    features, losses = _data()
    chosen = SELECTORS[method](features, budget, losses=losses, seed=3)
    assert chosen.dtype == np.int64
    assert chosen.shape == (budget,)
    assert np.array_equal(chosen, np.unique(chosen))
    assert chosen.min() >= 0 and chosen.max() < features.shape[0]


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_deterministic_for_a_seed(method):
    features, losses = _data()
    first = SELECTORS[method](features, 30, losses=losses, seed=7)
    again = SELECTORS[method](features.copy(), 30, losses=losses.copy(), seed=7)
    assert np.array_equal(first, again)


def test_random_depends_on_seed():
    features, _ = _data()
    assert not np.array_equal(SELECTORS["random"](features, 30, seed=1), SELECTORS["random"](features, 30, seed=2))


@pytest.mark.parametrize("method", sorted(SELECTORS))
@pytest.mark.parametrize("budget", [200, 500, 1.0])
def test_budget_covering_the_stage_returns_all(method, budget):
    features, losses = _data()
    chosen = SELECTORS[method](features, budget, losses=losses)
    assert np.array_equal(chosen, np.arange(200))


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_fraction_budget(method):
    features, losses = _data()
    assert SELECTORS[method](features, 0.05, losses=losses).shape == (10,)


def test_dispatch_by_name_and_unknown_names():
    features, losses = _data()
    assert np.array_equal(select("kmeans", features, 20, seed=1), SELECTORS["kmeans"](features, 20, seed=1))
    with pytest.raises(ValueError, match="unknown buffer selector 'herding'"):
        select("herding", features, 20)
    with pytest.raises(TypeError):
        select("coverage", features, 20, n_clusters=4)  # an option the selector does not know is not ignored


@pytest.mark.parametrize(
    "features",
    [np.zeros((0, 4), np.float32), np.zeros(10, np.float32), np.ones((5, 3), np.int64), np.full((5, 3), np.nan)],
)
def test_bad_features_are_refused(features):
    with pytest.raises((ValueError, TypeError)):
        SELECTORS["random"](features, 2)


@pytest.mark.parametrize(
    ("budget", "n", "expected"),
    [
        (10, 100, 10),
        (1000, 100, 100),
        (1, 5, 1),
        (np.int64(3), 5, 3),
        (0.05, 100, 5),
        (0.001, 100, 1),
        (1.0, 7, 7),
        (0.5, 5, 3),
        (0.25, 10, 3),
        (np.float32(0.5), 4, 2),
    ],
)
def test_resolve_budget(budget, n, expected):
    assert resolve_budget(budget, n) == expected


@pytest.mark.parametrize(
    ("budget", "n", "error", "match"),
    [
        (0, 10, ValueError, "count must be >= 1"),
        (-3, 10, ValueError, "count must be >= 1"),
        (0.0, 10, ValueError, r"fraction must be in \(0, 1\]"),
        (1.5, 10, ValueError, "use an int for a count"),
        (math.nan, 10, ValueError, "fraction"),
        (True, 10, TypeError, "bool"),
        ("5", 10, TypeError, "str"),
        (5, 0, ValueError, "at least one sample"),
    ],
)
def test_resolve_budget_errors(budget, n, error, match):
    with pytest.raises(error, match=match):
        resolve_budget(budget, n)


def test_budget_exceeds_only_for_a_count_above_the_stage():
    assert budget_exceeds(5000, 230) and budget_exceeds(231, 230)
    assert not budget_exceeds(230, 230) and not budget_exceeds(10, 230)
    assert not budget_exceeds(1.0, 230) and not budget_exceeds(0.1, 3)  # a fraction never asks for more
    assert not budget_exceeds(True, 0)  # bool is not a count (resolve_budget rejects it)
    assert resolve_budget(5000, 230) == 230


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_every_selector_shares_the_prelude_errors(method):
    features, losses = _data(20)
    with pytest.raises(ValueError, match="non-empty"):
        SELECTORS[method](np.zeros((0, 4), np.float32), 2, losses=losses)
    with pytest.raises(ValueError, match="budget count must be >= 1"):
        SELECTORS[method](features, 0, losses=losses)
    with pytest.raises(TypeError, match="bool"):
        SELECTORS[method](features, True, losses=losses)


def test_selective_checks_its_losses_and_fraction_before_the_budget():
    features, losses = _data(20)
    # even when the budget keeps everything, and even with a bad budget: the prelude's order of checks
    with pytest.raises(ValueError, match="needs per-sample pretext losses"):
        SELECTORS["selective"](features, 20)
    with pytest.raises(ValueError, match=r"shape \(20,\)"):
        SELECTORS["selective"](features, 0, losses=losses[:5])
    with pytest.raises(ValueError, match=r"protect_fraction must be in \[0, 1\], got 1.5"):
        SELECTORS["selective"](features, 0, losses=losses, protect_fraction=1.5)
    assert np.array_equal(SELECTORS["selective"](features, 20, losses=losses, protect_fraction=1.0), np.arange(20))
