"""EvalConfig.as_params gives back the eval block as params.yaml spells it: evaluate@<stage> logs it to MLflow,
and the eval rows and the report key results by str(fraction), so a fraction written `1` must stay `1`."""

from __future__ import annotations

import copy

import pytest
import yaml

from cssl_core.config.errors import ConfigError
from cssl_core.config.evaluation import parse_eval
from tests.helpers import REPO_ROOT

REAL = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
COHORTS, WINDOWS = tuple(REAL["ingest"]["cohorts"]), tuple(REAL["window"]["apply"])
STAGE_WINDOWS = {"s1": "mediastinal", "s2": "lung"}


def _block(**changes) -> dict:
    block = copy.deepcopy(REAL["eval"])
    block.update(changes)
    return block


def test_the_shipped_block_comes_back_as_written():
    block = _block()
    config = parse_eval(block, COHORTS, WINDOWS, STAGE_WINDOWS)
    assert config.as_params() == block and list(config.as_params()) == list(block)
    assert "register" not in config.as_params() and config.register is True  # the default, not written
    assert "folds" not in config.as_params()["tasks"]["ggo"] and config.tasks["ggo"].folds is None
    assert config.as_params()["tasks"]["nsclc_tumor"]["folds"] == "loo"


def test_a_written_register_and_integer_fractions_stay_as_written():
    block = _block(fractions=[0.5, 1], register=False)
    config = parse_eval(block, COHORTS, WINDOWS, STAGE_WINDOWS)
    assert config.register is False and config.as_params()["register"] is False
    assert [str(f) for f in config.fractions] == ["0.5", "1"]  # the row key "1", not "1.0"
    assert config.as_params() == block




def test_a_task_may_name_the_stage_it_measures_and_keeps_it_as_written():
    block = _block()
    block["tasks"]["mediastinal_lesion"]["stage"] = "s1"
    config = parse_eval(block, COHORTS, WINDOWS, STAGE_WINDOWS)
    assert config.tasks["mediastinal_lesion"].stage == "s1" and config.tasks["ggo"].stage is None
    assert config.as_params() == block


def test_a_task_naming_an_unknown_stage_or_one_in_another_window_is_refused():
    block = _block()
    block["tasks"]["mediastinal_lesion"]["stage"] = "s9"
    with pytest.raises(ConfigError, match="eval.tasks.mediastinal_lesion.stage"):
        parse_eval(block, COHORTS, WINDOWS, STAGE_WINDOWS)
    block["tasks"]["mediastinal_lesion"]["stage"] = "s2"  # s2 trains in the lung window, the task is mediastinal
    with pytest.raises(ConfigError, match="lung window"):
        parse_eval(block, COHORTS, WINDOWS, STAGE_WINDOWS)
