"""pretrain@<stage> with replay.privacy.mode adversarial: the NoPeek term is trained and logged in the stage that
trains the lower blocks, and a penalised run never shares a checkpoint directory with a plain one."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import mlflow

from cssl_core.config import ProjectConfig
from tasks.init_model import run_init
from tasks.pretrain import run_pretrain
from tests.tasks.stage_project import make_stage_project, stage_params

CHECKPOINTS = Path("data/checkpoints/s1")


def _run(params: dict) -> dict:
    config = ProjectConfig.from_params(params)
    run_init(config)
    shutil.rmtree("data/models/s1", ignore_errors=True)
    return run_pretrain("s1", config)


def test_adversarial_mode_trains_and_logs_the_penalty(tmp_path, monkeypatch):
    monkeypatch.chdir(make_stage_project(tmp_path))
    plain = stage_params("latent_replay")
    plain["replay"]["privacy"] = {**plain["replay"]["privacy"], "mode": "none"}
    penalised = copy.deepcopy(plain)
    penalised["replay"]["privacy"].update(mode="adversarial", adversarial_weight=0.5)

    summary = _run(penalised)
    assert 0.0 < summary["loss_nopeek"] <= 1.0
    assert summary["loss_total"] > summary["loss_mae"]  # total = mae + 0.5 * nopeek (stage 1: no replay term)
    description = json.loads(Path("data/models/s1/model.json").read_text())
    assert description["strategy_options"]["nopeek_weight"] == 0.5 and description["lower_frozen"] is False
    run = mlflow.last_active_run()
    assert run is not None and run.data.params["nopeek_weight"] == "0.5"
    (first,) = {p.name for p in CHECKPOINTS.iterdir()}

    summary = _run(plain)
    assert "loss_nopeek" not in summary and summary["resumed_from_epoch"] == -1  # trained, not resumed
    assert len({p.name for p in CHECKPOINTS.iterdir()} - {first}) == 1
