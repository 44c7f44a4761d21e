"""Small numeric and markdown helpers shared by reports/compare.md's sections (cssl_core/reporting/comparison.py
and comparison_sanity.py): one place decides how a missing number, a mean ± sd and a table are written."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


def metric(metrics: dict[str, Any], *keys: str) -> float:
    """The number at `keys` in a metric tree; nan where a key is missing or the value is not a number (a cell
    `dvc exp show` dropped, a family a run never evaluated), so one absent value never stops a report."""
    node: Any = metrics
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return float(node) if isinstance(node, int | float) else float("nan")


def fmt(values: list[float], digits: int = 3) -> str:
    """mean ± sample sd of the finite values (one value alone, n/a for none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{np.mean(finite):.{digits}f} ± {np.std(finite, ddof=1):.{digits}f}"


def nanmean(values, axis: int | None = None):
    """Mean ignoring nan; nan (and no warning) where every value is nan, e.g. R cells never evaluated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def sd(values: list[float]) -> float:
    """Sample sd of the finite values; 0 with fewer than two (callers that must tell "one seed" apart count)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]
