"""The default `quality` block, shared by the screen and quality-gate tests (the same values as params.yaml)."""

from __future__ import annotations


def quality_params(cohort: str, *, html_report: bool) -> dict:
    return {
        "modalities": ["CT"],
        "spacing_xy_mm": [0.2, 5.0],
        "spacing_z_mm": [0.3, 10.0],
        "n_slices": [1, 3000],
        "air_hu_min": [-1200, -900],
        "plausible_hu_max": [100, 4000],
        "min_slices_soft": 16,
        "not_constant_mostly": 0.9,
        "html_report": html_report,
        "on_fail": "exclude",
        "min_series": 0.5,
        "cohorts": {cohort: {}},
    }
