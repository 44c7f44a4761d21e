"""The quality gate's rules (cssl_core/config/quality.py), which the screen and quality stages and the
whole-params check all import from there."""

from __future__ import annotations

import pytest

import tasks.screen
from cssl_core.config import ProjectConfig, quality
from tests.helpers import tiny_params


def test_the_stages_use_the_library_rules_themselves():
    """The stages read config.quality.settings(cohort), which the whole-params check builds with these rules."""
    assert tasks.screen.required_series is quality.required_series
    params = tiny_params()
    params["quality"]["air_hu_min"] = [-1100, -900]
    params["quality"]["cohorts"]["phantom_b"] = {"min_series": 2}
    config = ProjectConfig.from_params(params)
    for cohort in params["quality"]["cohorts"]:
        assert config.quality.settings(cohort) == quality.effective_params(params, cohort)
    assert config.quality.settings("phantom_b")["min_series"] == 2
    assert config.quality.settings("phantom_a")["air_hu_min"] == [-1100, -900]


def test_defaults_then_block_then_the_cohorts_own_entry():
    params = {"quality": {"air_hu_min": [-1100, -900], "cohorts": {"a": {"air_hu_min": [-2000, 0]}, "b": None}}}
    assert quality.effective_params(params, "a") == {**quality.DEFAULTS, "air_hu_min": [-2000, 0]}
    assert quality.effective_params(params, "b") == {**quality.DEFAULTS, "air_hu_min": [-1100, -900]}


@pytest.mark.parametrize(
    ("block", "cohort", "error", "message"),
    [
        ({"cohorts": {}}, "a", KeyError, r"params.yaml has no quality.cohorts.a: add `a: \{\}`"),
        ({"cohorts": {"a": []}}, "a", ValueError, r"quality.cohorts.a must be a mapping of settings"),
        ({"cohorts": {"a": {"air_hu": [0, 1]}}}, "a", ValueError, r"quality.cohorts.a.air_hu is not a quality setting"),
        ({"n_slices": [5, 1], "cohorts": {"a": {}}}, "a", ValueError, r"quality.n_slices must be \[low, high\] with"),
        ({"min_series": 0, "cohorts": {"a": {}}}, "a", ValueError, r"quality.min_series must be a count of series"),
        ({"on_fail": "skip", "cohorts": {"a": {}}}, "a", ValueError, r"quality.on_fail must be one of stop, exclude"),
    ],
)
def test_a_bad_setting_names_its_own_key(block, cohort, error, message):
    with pytest.raises(error, match=message):
        quality.effective_params({"quality": block}, cohort)


@pytest.mark.parametrize(
    ("value", "n", "required"), [(0.5, 4, 2), (0.5, 3, 2), (1.0, 7, 7), (0.01, 3, 1), (1, 10, 1), (5, 3, 5)]
)
def test_required_series(value, n, required):
    assert quality.required_series(value, n) == required
