"""Which samples of a finished stage go into its replay buffer.

Every selector has one signature, `select(features, budget, *, losses=None, seed=0, **options)`, and returns
sorted unique int64 indices, exactly `budget` of them (all n when the budget covers the stage), so a
strategy or the export stage can switch selectors by name from params.yaml (`SELECTORS[name]`).
Options a selector does not know raise TypeError rather than being silently ignored.

- `random`: the baseline every other selector must beat.
- `kmeans`: MedCoSS (representative and diverse), see `cssl_core.replay.kmeans`.
- `coverage`: OnlineLearning's dynamic memory (drop the most redundant sample), see `cssl_core.replay.coverage`.
- `selective`: its selective memory: coverage pruning that never drops the hardest quarter of the stage
  by pretext loss, because hard samples are the ones the next stage is most likely to forget.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import numpy as np

from cssl_core.replay.coverage import cosine_similarity_matrix, prune_by_coverage, top_by_loss
from cssl_core.replay.kmeans import default_n_clusters, kmeans_clusters, select_nearest_centroids

Selector = Callable[..., np.ndarray]


def resolve_budget(budget: int | float, n: int) -> int:
    """Turn a budget from params.yaml into a sample count, at most n.

    An int is a count (per stage); a float in (0, 1] is a fraction of the stage, rounded, at least one
    sample, so a small stage is never left without a buffer. `1` means one sample, `1.0` the whole stage.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"a stage must have at least one sample to select from, got n={n!r}")
    if isinstance(budget, bool):
        raise TypeError(f"budget must be an int count or a float fraction, got bool {budget!r}")
    if isinstance(budget, numbers.Integral):
        if budget < 1:
            raise ValueError(f"budget count must be >= 1, got {budget}")
        return min(int(budget), int(n))
    if isinstance(budget, numbers.Real):
        fraction = float(budget)
        if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
            raise ValueError(f"budget fraction must be in (0, 1], got {budget!r} (use an int for a count)")
        return min(int(n), max(1, math.floor(fraction * n + 0.5)))  # half up, not banker's
    raise TypeError(f"budget must be an int count or a float fraction, got {type(budget).__name__}")


def budget_exceeds(budget: int | float, n: int) -> bool:
    """Whether a count budget asks for more samples than the stage has, so `resolve_budget` keeps all n.

    Worth saying to the user: a budget copied from a large cohort to a small one silently becomes
    "keep everything", which changes what a comparison of strategies compares. A fraction never exceeds.
    """
    return isinstance(budget, numbers.Integral) and not isinstance(budget, bool) and int(budget) > int(n)


def _features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"features must be a non-empty (n, d) array of pooled features, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"features must be floating point, got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; fix the export before selecting")
    return x


def _losses(losses: np.ndarray | None, n: int, method: str) -> np.ndarray:
    if losses is None:
        raise ValueError(f"selector {method!r} needs per-sample pretext losses (losses=...), got None")
    loss = np.asarray(losses, dtype=np.float64)
    if loss.shape != (n,):
        raise ValueError(f"losses must have shape ({n},) to match the features, got {loss.shape}")
    if not np.isfinite(loss).all():
        raise ValueError("losses contain NaN or inf")
    return loss


Pick = Callable[[np.ndarray, int, np.ndarray | None], np.ndarray]  # (features, k, losses) -> k indices


def _selected(
    features: np.ndarray,
    budget: int | float,
    pick: Pick,
    *,
    losses: np.ndarray | None = None,
    loss_method: str | None = None,
    unit_options: Mapping[str, float] | None = None,
) -> np.ndarray:
    """What every selector does around its own choice: validate the features (and the losses and [0, 1]
    options it needs), turn the budget into a count k, keep all n when k covers the stage, and otherwise
    call `pick(features, k, losses)` for the k indices. One prelude is what makes the selectors agree on
    errors and on the "budget covers the stage" case, whichever name params.yaml picks.
    """
    x = _features(features)
    n = x.shape[0]
    loss = _losses(losses, n, loss_method) if loss_method is not None else None
    for name, value in (unit_options or {}).items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    k = resolve_budget(budget, n)
    if k == n:
        return np.arange(n, dtype=np.int64)
    return pick(x, k, loss)


def select_random(
    features: np.ndarray, budget: int | float, *, losses: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Seeded uniform sample without replacement."""

    def pick(x: np.ndarray, k: int, _: np.ndarray | None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(x.shape[0], size=k, replace=False)).astype(np.int64)

    return _selected(features, budget, pick)


def select_kmeans(
    features: np.ndarray,
    budget: int | float,
    *,
    losses: np.ndarray | None = None,
    seed: int = 0,
    n_clusters: int | None = None,
    n_init: int = 4,
    max_iter: int = 300,
) -> np.ndarray:
    """MedCoSS: seeded k-means, budget split over clusters by size, nearest-to-centroid members kept.

    `n_clusters` defaults to `default_n_clusters(n, budget)`; it may exceed the budget, then only the
    clusters that the proportional split reaches are represented.
    """

    def pick(x: np.ndarray, k: int, _: np.ndarray | None) -> np.ndarray:
        clusters = default_n_clusters(x.shape[0], k) if n_clusters is None else int(n_clusters)
        x, labels, centers = kmeans_clusters(x, clusters, seed=seed, n_init=n_init, max_iter=max_iter)
        return select_nearest_centroids(x, labels, centers, k)

    return _selected(features, budget, pick)


def select_coverage(
    features: np.ndarray, budget: int | float, *, losses: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """OnlineLearning dynamic memory. Deterministic: `seed` is accepted for the common signature only."""

    def pick(x: np.ndarray, k: int, _: np.ndarray | None) -> np.ndarray:
        return prune_by_coverage(cosine_similarity_matrix(x), k)

    return _selected(features, budget, pick)


def select_selective(
    features: np.ndarray,
    budget: int | float,
    *,
    losses: np.ndarray | None = None,
    seed: int = 0,
    protect_fraction: float = 0.25,
) -> np.ndarray:
    """Coverage pruning that never drops the ceil(protect_fraction * n) highest-loss samples.

    If the protected set alone is larger than the budget, the budget goes to the highest losses (ties: lower
    index). Deterministic: `seed` is accepted for the common signature only.
    """

    def pick(x: np.ndarray, k: int, loss: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        n_protected = math.ceil(protect_fraction * n)
        if n_protected >= k:
            return np.sort(top_by_loss(loss, k))
        protected = np.zeros(n, dtype=bool)
        protected[top_by_loss(loss, n_protected)] = True
        return prune_by_coverage(cosine_similarity_matrix(x), k, protected)

    return _selected(
        features,
        budget,
        pick,
        losses=losses,
        loss_method="selective",
        unit_options={"protect_fraction": protect_fraction},
    )


SELECTORS: dict[str, Selector] = {
    "random": select_random,
    "kmeans": select_kmeans,
    "coverage": select_coverage,
    "selective": select_selective,
}


def select(
    method: str,
    features: np.ndarray,
    budget: int | float,
    *,
    losses: np.ndarray | None = None,
    seed: int = 0,
    **options,
) -> np.ndarray:
    """Run the selector named in params.yaml; an unknown name lists the known ones."""
    try:
        selector = SELECTORS[method]
    except KeyError:
        raise ValueError(f"unknown buffer selector {method!r}; choose one of {sorted(SELECTORS)}") from None
    return selector(features, budget, losses=losses, seed=seed, **options)
