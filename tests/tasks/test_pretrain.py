"""pretrain@<stage> keeps one checkpoint directory per configuration: trying another configuration and going
back reuses the first run instead of retraining it (the issue: switching ssl.preset and back cost 13 min)."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

from cssl_core.config import ProjectConfig
from cssl_core.layout import stage_paths
from cssl_core.train.store import INPUTS_FILE
from tasks.init_model import run_init
from tasks.pretrain import input_digests, run_pretrain
from tests.tasks.stage_project import make_stage_project, stage_params

CHECKPOINTS = Path("data/checkpoints/s1")
MODEL = Path("data/models/s1/model.pt")


def _weights() -> dict[str, torch.Tensor]:
    return torch.load(MODEL, weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run(params: dict) -> dict:
    """What `dvc repro` does for a changed pretrain@s1: the init stage for these params, then the stage with
    its output removed first."""
    config = ProjectConfig.from_params(params)
    run_init(config)
    shutil.rmtree(MODEL.parent, ignore_errors=True)
    return run_pretrain("s1", config)


def _dirs() -> set[str]:
    return {p.name for p in CHECKPOINTS.iterdir()}


def test_another_config_and_back_reuses_the_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(make_stage_project(tmp_path))
    a = stage_params()
    b = copy.deepcopy(a)
    b["ssl"]["model"]["hidden_size"] = 48  # like switching ssl.preset: another init model, another shape

    first = _run(a)
    assert first["epochs_this_run"] == 2 and first["resumed_from_epoch"] == -1
    weights_a, (dir_a,) = _weights(), _dirs()
    assert {"last.pt", "prev.pt", "fingerprint.json"} <= {p.name for p in (CHECKPOINTS / dir_a).iterdir()}

    assert _run(b)["epochs_this_run"] == 2
    assert dir_a in _dirs() and len(_dirs()) == 2  # A's checkpoints survived B

    capsys.readouterr()
    back = _run(a)
    assert back["epochs_this_run"] == 0 and back["resumed_from_epoch"] == 2  # nothing retrained
    assert "reused the finished run" in capsys.readouterr().out
    assert _same(_weights(), weights_a) and back["loss_total"] == first["loss_total"]
    history = Path("data/metrics/pretrain-s1-history.csv").read_text().splitlines()
    assert len(history) == 3  # both epochs of the reused run, not an empty history

    # a third configuration with room for two: B, used least recently, goes; A stays
    c = copy.deepcopy(a)
    c["ssl"]["train"].update(lr=1e-3, keep_checkpoints=2)
    dir_b = (_dirs() - {dir_a}).pop()
    assert _run(c)["epochs_this_run"] == 2
    assert dir_a in _dirs() and dir_b not in _dirs() and len(_dirs()) == 2
    assert f"removed the checkpoints of an older configuration ({CHECKPOINTS / dir_b}" in capsys.readouterr().out


def test_checkpoints_of_the_earlier_layout_are_adopted_not_deleted(tmp_path, monkeypatch):
    monkeypatch.chdir(make_stage_project(tmp_path))
    params = stage_params()
    _run(params)
    weights, (key,) = _weights(), _dirs()
    # the layout before per-configuration directories: last.pt and the input record right in data/checkpoints/s1
    os.replace(CHECKPOINTS / key / "last.pt", CHECKPOINTS / "last.pt")
    shutil.rmtree(CHECKPOINTS / key)
    fingerprint = input_digests(stage_paths(params, "s1"), ProjectConfig.from_params(params))
    (CHECKPOINTS / INPUTS_FILE).write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")

    again = _run(params)
    assert again["epochs_this_run"] == 0 and _same(_weights(), weights)
    assert _dirs() == {key} and not [p for p in CHECKPOINTS.iterdir() if p.is_file()]


def test_a_stage_of_its_own_augmentation_trains_as_the_global_setting_would(tmp_path, monkeypatch):
    """continual.stages.<k>.augment reaches the loader: `none` on the stage trains the weights that ssl.augment
    `none` trains, and not the augmented default's."""
    monkeypatch.chdir(make_stage_project(tmp_path))
    default = stage_params()
    on_stage = copy.deepcopy(default)
    on_stage["continual"]["stages"]["s1"]["augment"] = "none"
    global_none = copy.deepcopy(default)
    global_none["ssl"]["augment"] = "none"

    _run(on_stage)
    weights_on_stage = _weights()
    assert _run(global_none)["epochs_this_run"] == 2  # another checkpoint key: the stage block changed
    assert _same(_weights(), weights_on_stage)
    _run(default)
    assert not _same(_weights(), weights_on_stage)
