"""ContinualConfig.paths: the StagePaths every stage reads from the typed config, equal to what the raw-dict
cssl_core.layout.stage_paths gives, and the same one-line error for a stage that is not in the schedule."""

from __future__ import annotations

import pytest

from cssl_core.config.continual import parse_continual
from cssl_core.layout import stage_paths

STAGES = {
    "s1": {"prev": "init", "cohort": "a", "window": "lung"},
    "s2": {"prev": "s1", "cohort": "b", "window": "mediastinal", "train": {"epochs": 1}},
    "s3": {"prev": "s2", "cohort": "a", "window": "mediastinal"},
}


def _continual():
    return parse_continual({"stages": STAGES}, ("a", "b"), ("lung", "mediastinal"))


def test_paths_match_the_raw_params_paths_with_the_index_along_the_chain():
    continual = _continual()
    for name in STAGES:
        assert continual.paths(name) == stage_paths({"continual": {"stages": STAGES}}, name)
    assert [continual.paths(name).index for name in ("s1", "s2", "s3")] == [0, 1, 2]
    assert continual.paths("s2").prev_model.as_posix() == "data/models/s1"


def test_an_unknown_stage_names_the_known_ones():
    known = r"no continual stage 's9' in params.yaml continual.stages \(known: s1, s2, s3\)"
    with pytest.raises(KeyError, match=known):
        _continual().paths("s9")


def test_ordered_stages_is_the_longest_chain_in_training_order():
    branching = {"s3": STAGES["s3"], "b1": {"prev": "s1", "cohort": "b", "window": "lung"}, **STAGES}
    continual = parse_continual({"stages": branching}, ("a", "b"), ("lung", "mediastinal"))
    assert continual.ordered_stages() == ["s1", "s2", "s3"]
    assert _continual().ordered_stages() == ["s1", "s2", "s3"]
