"""Findings placed where one window shows them and the other clips them away.

A window is affine, so it can only hide a finding by clipping it: ground-glass opacities (-700..-350 HU)
sit below the mediastinal window's floor (-135 HU), enhancing mediastinal lesions (+180..+210 HU beside
+150..+165 HU vessels) sit above the lung window's ceiling (+150 HU), and low-contrast masses (+15..+30 HU
in +45..+60 HU tissue) are only degraded by the lung window's coarse grey steps. Each lesion is an
ellipsoid in mm, clipped to its compartment, so the same finding spans a number of slices that depends on
the slice thickness, as it would on a scanner.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from cssl_core.demo.anatomy import Chest, Tissue
from cssl_core.demo.shapes import Blob, Grid, ellipsoid, smooth_noise


@dataclass(frozen=True)
class FindingKind:
    label: str  # slice label column
    mask_value: int
    hu_band: tuple[float, float]  # the band every lesion voxel stays in (noiseless)
    diameter_mm: tuple[float, float]
    compartment: tuple[Tissue, ...]
    per_100mm: tuple[float, float]  # lesions per 100 mm of scanned length, for a patient who has it


GGO = FindingKind("has_ggo", 1, (-700.0, -350.0), (5.0, 20.0), (Tissue.LUNG, Tissue.LUNG_VESSEL), (5.5, 7.5))
ENHANCING = FindingKind("has_mediastinal_lesion", 2, (180.0, 210.0), (8.0, 22.0), (Tissue.MEDIASTINUM,), (3.5, 5.0))
LOW_CONTRAST = FindingKind("has_lowcontrast_mass", 3, (15.0, 30.0), (15.0, 32.0), (Tissue.MEDIASTINUM,), (1.6, 2.6))
KINDS: tuple[FindingKind, ...] = (GGO, ENHANCING, LOW_CONTRAST)
LABEL_COLUMNS: tuple[str, ...] = tuple(kind.label for kind in KINDS)

MIN_PIXELS = 3  # a lesion cut smaller than this on a slice is dropped there: nobody could call it
MIN_INSIDE = 0.6  # fraction of a candidate lesion that must fall in its compartment on its centre slice
TRIES = 40


def add_findings(rng: np.random.Generator, grid: Grid, chest: Chest, present: Collection[str]) -> np.ndarray:
    """Paint lesions of the kinds named in `present` (label names) into chest.hu; returns the lesion mask.

    Low-contrast masses are painted first and enhancing lesions last, so where they touch, the mask and
    the HU agree on which one won.
    """
    unknown = set(present) - set(LABEL_COLUMNS)
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}; known: {LABEL_COLUMNS}")
    mask = np.zeros(grid.shape, dtype=np.uint8)
    scanned_mm = grid.n_slices * grid.slice_thickness_mm
    texture = smooth_noise(rng, grid, 2.0)
    for kind in (LOW_CONTRAST, GGO, ENHANCING):
        if kind.label not in present:
            continue
        expected = rng.uniform(*kind.per_100mm) * scanned_mm / 100.0
        count = max(1, int(rng.poisson(expected)))
        region = np.isin(chest.tissue, [int(t) for t in kind.compartment])
        candidates = np.flatnonzero(region)
        if candidates.size == 0:
            continue
        for _ in range(count):
            lesion = _place(rng, grid, chest, kind, region, candidates)
            if lesion is not None:
                lo, hi = kind.hu_band
                margin = 0.15 * (hi - lo)
                base = rng.uniform(lo + margin, hi - margin)
                chest.hu[lesion] = np.clip(base + 0.05 * (hi - lo) * texture[lesion], lo, hi)
                mask[lesion] = kind.mask_value
    return mask


def draw_findings(rng: np.random.Generator, finding_rate: float) -> set[str]:
    """Which finding kinds one patient has: each independently with probability finding_rate."""
    return {kind.label for kind in KINDS if rng.random() < finding_rate}


def assign_findings(rng: np.random.Generator, n_patients: int, finding_rate: float) -> list[set[str]]:
    """Finding kinds per patient for a whole cohort, stratified rather than independent.

    Each kind goes to floor(rate * n) patients plus one more with the leftover probability: the expected
    share is still finding_rate, but a six-patient cohort cannot end up with one patient with GGO by bad luck.
    """
    present: list[set[str]] = [set() for _ in range(n_patients)]
    for kind in KINDS:
        exact = finding_rate * n_patients
        count = int(np.floor(exact)) + int(rng.random() < exact - np.floor(exact))
        for patient in rng.choice(n_patients, size=min(count, n_patients), replace=False):
            present[int(patient)].add(kind.label)
    return present


def slice_labels(mask: np.ndarray) -> dict[str, np.ndarray]:
    """A slice is positive for a finding exactly when its mask shows that finding."""
    return {kind.label: (mask == kind.mask_value).any(axis=(1, 2)) for kind in KINDS}


def _place(
    rng: np.random.Generator, grid: Grid, chest: Chest, kind: FindingKind, region: np.ndarray, candidates: np.ndarray
) -> np.ndarray | None:
    """The voxels of one lesion inside its compartment, or None when no spot was found."""
    diameter = rng.uniform(*kind.diameter_mm)
    for attempt in range(TRIES):
        if attempt and attempt % 10 == 0:
            diameter = max(kind.diameter_mm[0], diameter * 0.8)
        blob = _candidate(rng, grid, chest, kind, candidates, diameter)
        if blob is None:
            continue
        shape = blob.mask(grid)
        centre_slice = int(np.argmax(blob.a * blob.present))
        area = shape[centre_slice].sum()
        lesion = shape & region
        if area == 0 or lesion[centre_slice].sum() < MIN_INSIDE * area:
            continue
        small = lesion.sum(axis=(1, 2)) < MIN_PIXELS
        lesion[small] = False
        if lesion.any():
            return lesion
    return None


def _candidate(
    rng: np.random.Generator, grid: Grid, chest: Chest, kind: FindingKind, candidates: np.ndarray, diameter: float
) -> Blob | None:
    radius = diameter / 2.0
    radii = (radius, radius * rng.uniform(0.75, 1.0), radius * rng.uniform(0.8, 1.2))
    theta = rng.uniform(0, np.pi)
    if kind is ENHANCING:
        # Beside a contrast-filled vessel: that is what makes it a lung-window-invisible finding.
        vessels = [v for v in chest.contrast_vessels if v.present.any()]
        vessel = vessels[int(rng.integers(len(vessels)))]
        z = int(rng.choice(np.flatnonzero(vessel.present)))
        angle = rng.uniform(0, 2 * np.pi)
        gap = vessel.a[z] + 0.7 * radius
        centre = (vessel.cx[z] + gap * np.cos(angle), vessel.cy[z] + gap * np.sin(angle), grid.depth_mm[z])
    else:
        z, row, col = np.unravel_index(int(rng.choice(candidates)), grid.shape)
        axis = grid.axis_mm
        centre = (float(axis[col]), float(axis[row]), float(grid.depth_mm[z]))
    return ellipsoid(grid, centre, radii, theta)
