"""The quality gate's settings for one cohort (params.yaml `quality`, with `quality.cohorts.<name>` on top).

The rules (keys, value checks, defaults, the per-cohort merge) live in cssl_core/config/quality.py, where the
whole-params check that runs before every stage (cssl_core.config) uses them too; this module re-exports
them for the screen and quality stages and adds what only those stages need: `required_series`.
"""

from __future__ import annotations

import math

from cssl_core.config.quality import (
    CHECKS,
    DEFAULT_MIN_SERIES,
    DEFAULT_ON_FAIL,
    DEFAULTS,
    ON_FAIL,
    RANGE_KEYS,
    cohort_override,
    effective_params,
    quality_block,
)

__all__ = [
    "CHECKS",
    "DEFAULTS",
    "DEFAULT_MIN_SERIES",
    "DEFAULT_ON_FAIL",
    "ON_FAIL",
    "RANGE_KEYS",
    "cohort_override",
    "effective_params",
    "quality_block",
    "required_series",
]


def required_series(min_series: int | float, n_series: int) -> int:
    """How many series must pass: the count itself, or the fraction of the cohort rounded up (at least 1)."""
    if isinstance(min_series, float):
        return max(1, math.ceil(min_series * n_series - 1e-9))
    return int(min_series)
