"""with_settings must give what DVC's one `-S` per leaf gives: `cssl compare` validates that before queueing."""

import pytest

from cssl_core.config.compare import leaf_settings, with_settings
from cssl_core.config.errors import ConfigError

PARAMS = {"quality": {"cohorts": {"a": {}, "b": {"air_hu_min": [-1200, -900]}}}, "eval": {"folds": 3}}


def test_a_block_value_is_merged_beside_the_existing_keys():
    applied = with_settings(PARAMS, {"quality.cohorts": {"c": {}}, "eval": {"folds": 4}})
    assert applied["quality"]["cohorts"] == {"a": {}, "b": {"air_hu_min": [-1200, -900]}, "c": {}}
    assert applied["eval"] == {"folds": 4}
    assert PARAMS["quality"]["cohorts"] == {"a": {}, "b": {"air_hu_min": [-1200, -900]}}  # the input is untouched


def test_an_empty_block_and_a_list_are_leaves():
    assert leaf_settings({"x": {"y": {}, "z": [1, 2]}, "w": 1}) == [("x.y", {}), ("x.z", [1, 2]), ("w", 1)]


def test_a_key_inside_a_plain_value_is_refused():
    with pytest.raises(ConfigError, match="not a block"):
        with_settings(PARAMS, {"eval.folds": {"inner": 1}})
