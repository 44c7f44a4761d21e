"""bench/forgetting.py's points: every one names a model and windows the study can build (a typo in a point
otherwise surfaces minutes into a study run, after its cohorts were generated)."""

from __future__ import annotations

import pytest

from bench import forgetting as study
from cssl_core.models.config import PRESETS, MAEConfig


@pytest.mark.parametrize("name", sorted(study.POINTS))
def test_every_point_builds_its_model_and_windows(name):
    point = study.POINTS[name]
    config = study.model_config(point.model)  # MAEConfig validates patch vs image size
    assert config.img_size % config.patch_size == 0
    assert set(point.windows) <= set(study.WINDOWS)
    assert point.eval_folds >= 2 and all(p > 0 for p in point.patients)


def test_the_finer_models_have_more_tokens_than_tiny():
    tiny = MAEConfig(**PRESETS["tiny"])
    for model in ("lead", "patch8"):
        finer = study.model_config(model)
        assert finer.patch_size < tiny.patch_size and finer.num_patches > tiny.num_patches
