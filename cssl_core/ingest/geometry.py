"""Slice geometry: orientation, slice normal, geometric order and spacing analysis.

Instance numbers and file names are unreliable orderings; the only trustworthy one is the position of
each slice projected on the slice normal (what GDCM/ITK use), so every ordering decision lives here.
Spacing follows ITK's ImageSeriesReader when slices are evenly spaced ((last - first) / (n - 1)), so
our volumes match SimpleITK's exactly, and falls back to the median step when they are not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ORIENTATION_TOL = 1e-4  # cosines: two slices share an orientation when all six differ less than this
DUPLICATE_TOL_MM = 1e-3  # two slices closer than this along the normal occupy the same position
UNEVEN_REL = 0.01  # a step deviating from the median by more than 1% (and ...)
UNEVEN_ABS_MM = 0.01  # ... more than 0.01 mm, which absorbs positions rounded to 0.01 mm) is uneven
GAP_FACTOR = 1.5  # a step longer than 1.5 x the median means at least one slice is missing


Vec = tuple[float, float, float]


def _cross(a: Sequence[float], b: Sequence[float]) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def unit(v: Sequence[float]) -> Vec:
    """v / |v| (plain floats: per-file vectors are tiny and numpy's call overhead dominates)."""
    n = _norm(v)
    return (v[0] / n, v[1] / n, v[2] / n) if n > 0 else (float(v[0]), float(v[1]), float(v[2]))


def axes(orientation: Sequence[float]) -> tuple[Vec, Vec, Vec]:
    """Row direction, column direction and slice normal (row x column), as unit vectors."""
    row = unit(orientation[:3])
    col = unit(orientation[3:6])
    return row, col, unit(_cross(row, col))


def is_valid_orientation(orientation: Sequence[float]) -> bool:
    """Both cosines non-zero and nearly perpendicular: otherwise no slice normal exists."""
    if _norm(orientation[:3]) < 0.5 or _norm(orientation[3:6]) < 0.5:
        return False
    return _norm(_cross(unit(orientation[:3]), unit(orientation[3:6]))) > 0.9


def same_orientation(a: Sequence[float], b: Sequence[float], tol: float = ORIENTATION_TOL) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def direction(orientation: Sequence[float]) -> tuple[float, ...]:
    """SimpleITK direction (row-major 3x3) whose columns are row dir, column dir and normal."""
    row, col, normal = axes(orientation)
    return tuple(float(x) for triple in zip(row, col, normal, strict=True) for x in triple)


def project(positions: Sequence[Sequence[float]], orientation: Sequence[float]) -> list[float]:
    """Each position's coordinate along the slice normal (mm)."""
    n = axes(orientation)[2]
    return [p[0] * n[0] + p[1] * n[1] + p[2] * n[2] for p in positions]


@dataclass(slots=True)
class SpacingReport:
    spacing: float
    uneven: bool
    has_gaps: bool
    n_gaps: int


def analyse_spacing(z_sorted: np.ndarray, single_slice_spacing: float) -> SpacingReport:
    """Slice spacing of sorted normal coordinates and whether the steps are regular.

    Even steps give ITK's (last - first) / (n - 1); uneven ones the median step, so that one missing
    slice does not stretch the whole volume. A single slice has no step: the caller's thickness is used.
    """
    z = np.asarray(z_sorted, dtype=np.float64)
    if z.size < 2:
        return SpacingReport(float(single_slice_spacing), False, False, 0)
    steps = np.diff(z)
    median = float(np.median(steps))
    tolerance = max(UNEVEN_REL * median, UNEVEN_ABS_MM)
    uneven = bool(np.max(np.abs(steps - median)) > tolerance)
    n_gaps = int(np.count_nonzero(steps > GAP_FACTOR * median))
    spacing = median if uneven else float((z[-1] - z[0]) / (z.size - 1))
    return SpacingReport(spacing, uneven, n_gaps > 0, n_gaps)


def duplicate_mask(z_sorted: np.ndarray, tol: float = DUPLICATE_TOL_MM) -> np.ndarray:
    """True for every slice that repeats the position of the slice kept before it."""
    z = np.asarray(z_sorted, dtype=np.float64)
    mask = np.zeros(z.size, dtype=bool)
    last_kept = None
    for i, value in enumerate(z):
        if last_kept is not None and abs(value - last_kept) < tol:
            mask[i] = True
        else:
            last_kept = value
    return mask
