"""The data side of the typed config (cssl_core/config/data.py) as the demo-data, screen, window and quality stages
read it: each lookup gives what the stage computed from the raw params before, and a bad name is the same one-line
error the stage raised."""

from __future__ import annotations

import pytest

from cssl_core.config import ConfigError, ProjectConfig
from cssl_core.config.quality import DEFAULTS, effective_params
from cssl_core.windowing import Window
from tests.helpers import tiny_params


def test_a_demo_cohort_keeps_its_block_as_written():
    params = tiny_params()
    params["data"]["demo"]["nsclc"] = {"source": "nsclc"}
    config = ProjectConfig.from_params(params)
    phantom = config.data.demo["phantom_a"]
    assert phantom.as_params() == params["data"]["demo"]["phantom_a"]
    assert list(phantom.as_params()) == list(params["data"]["demo"]["phantom_a"])  # the file's order
    assert "finding_rate" not in phantom.as_params()  # a PhantomConfig default, not in the block
    assert phantom.phantom.n_patients == 2 and phantom.source == "phantom"
    assert config.data.demo["nsclc"].as_params() == {"source": "nsclc"} and config.data.demo["nsclc"].phantom is None
    phantom.as_params()["seed"] = -1  # a copy: the frozen config is untouched
    assert config.data.demo["phantom_a"].block["seed"] == params["data"]["demo"]["phantom_a"]["seed"]


def test_a_window_preset_is_the_one_the_stage_built():
    params = tiny_params()
    config = ProjectConfig.from_params(params)
    presets = params["window"]["presets"]
    for name in presets:  # bone too: a preset need not be applied to be windowed by hand
        assert config.window.preset(name) == Window.from_preset(name, presets)
    assert (config.window.size, config.window.dtype) == (32, "uint8")


def test_an_unknown_window_preset_is_the_stages_own_error():
    params = tiny_params()
    config = ProjectConfig.from_params(params)
    with pytest.raises(KeyError) as expected:
        Window.from_preset("soft", params["window"]["presets"])
    with pytest.raises(KeyError) as caught:
        config.window.preset("soft")
    assert caught.value.args == expected.value.args
    assert "known presets: bone, lung, mediastinal" in caught.value.args[0]


def test_quality_settings_cover_every_entry_not_only_ingested_cohorts():
    params = tiny_params()
    params["quality"]["cohorts"]["site_x"] = {"on_fail": "stop"}  # not in ingest.cohorts: `cssl screen` takes it
    config = ProjectConfig.from_params(params)
    assert "site_x" not in config.ingest.cohorts
    assert config.quality.settings("site_x") == effective_params(params, "site_x")
    assert config.quality.settings("site_x")["on_fail"] == "stop"
    shared = {k: v for k, v in params["quality"].items() if k != "cohorts"}
    assert config.quality.settings("phantom_a") == {**DEFAULTS, **shared}
    config.quality.settings("phantom_a")["on_fail"] = "stop"  # a fresh dict each call
    assert config.quality.settings("phantom_a")["on_fail"] == params["quality"]["on_fail"]


def test_quality_settings_of_a_cohort_without_an_entry_say_what_to_add():
    config = ProjectConfig.from_params(tiny_params())
    with pytest.raises(KeyError) as expected:
        effective_params(tiny_params(), "site_y")
    with pytest.raises(KeyError) as caught:
        config.quality.settings("site_y")
    assert caught.value.args == expected.value.args and "`site_y: {}`" in caught.value.args[0]


def test_a_bad_extra_entry_is_refused_by_the_whole_check():
    params = tiny_params()
    params["quality"]["cohorts"]["site_x"] = {"air_hu_min": [0, -1]}
    with pytest.raises(ConfigError, match=r"quality\.cohorts\.site_x\.air_hu_min"):
        ProjectConfig.from_params(params)


@pytest.mark.parametrize("value", ["processes", "dask", "dask://127.0.0.1:8786", "dask://scheduler.site-a:1"])
def test_ingest_executor_accepts_the_three_forms(value):
    params = tiny_params()
    params["ingest"]["executor"] = value
    assert ProjectConfig.from_params(params).ingest.executor == value


@pytest.mark.parametrize("value", ["threads", "dask://", "dask://host", "dask://host:0", "dask://host:99999", 3, None])
def test_a_bad_ingest_executor_is_one_line_naming_the_key(value):
    params = tiny_params()
    params["ingest"]["executor"] = value
    with pytest.raises(ConfigError) as caught:
        ProjectConfig.from_params(params)
    text = str(caught.value)
    assert "\n" not in text and "ingest.executor" in text and "dask://host:port" in text


def test_the_project_default_executor_is_the_process_pool():
    assert ProjectConfig.from_params(tiny_params()).ingest.executor == "processes"
