"""The default `quality` block, shared by the screen and quality-gate tests (the same values as params.yaml), and
the whole configuration those stages read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cssl_core.config import ProjectConfig
from tests.helpers import tiny_params


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


def quality_config(block: Mapping[str, Any]) -> ProjectConfig:
    """The tiny test configuration with `block` as its `quality` section.

    The stages take the typed config, so a test's block goes through the whole-params check, as in `cssl screen`;
    the tiny configuration's own cohort entries are kept under the block's (every ingested cohort needs one).
    """
    params = tiny_params()
    entries = block.get("cohorts")
    cohorts = {**params["quality"]["cohorts"], **entries} if isinstance(entries, Mapping) else entries
    params["quality"] = {**block, "cohorts": cohorts}
    return ProjectConfig.from_params(params)
