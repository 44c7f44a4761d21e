"""cssl_core/models/io.py: a model directory gives back the same MAE, and a missing one says which stage to run."""

from __future__ import annotations

import json

import pytest
import torch

from cssl_core.models.io import CONFIG_FILE, MODEL_FILE, load_model, save_model
from tests.cssl_core.train.fixtures import micro_model

torch.set_num_threads(1)


def test_a_saved_model_loads_with_the_same_weights_and_description(tmp_path):
    model = micro_model(seed=3)
    description = {"model_config": model.config.to_dict(), "stage": "s1", "strategy": "finetune"}
    save_model(tmp_path / "models" / "s1", model, description)
    assert {p.name for p in (tmp_path / "models" / "s1").iterdir()} == {MODEL_FILE, CONFIG_FILE}
    loaded, got = load_model(tmp_path / "models" / "s1")
    assert got == json.loads(json.dumps(description))
    assert loaded.config == model.config
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_missing_model_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nowhere'}: no {CONFIG_FILE}; run the stage"):
        load_model(tmp_path / "nowhere")
