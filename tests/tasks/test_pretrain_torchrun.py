"""`cssl pretrain` with ssl.distributed.nproc_per_node 2 relaunches itself through torchrun (real processes, gloo):
both ranks train, rank 0 alone writes the model, the metrics and one MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from cssl_core.config import ProjectConfig
from tasks.init_model import run_init
from tasks.pretrain import torchrun_command
from tests.tasks.stage_project import make_stage_project, stage_params

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_command_meets_on_loopback_and_reruns_the_same_stage():
    config = ProjectConfig.from_params({**stage_params(), "ssl": {**stage_params()["ssl"], "distributed": {
        "nproc_per_node": 2}}})  # fmt: skip
    command = torchrun_command("s1", Path("p.yaml"), config.ssl.distributed)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc-per-node") + 1] == "2" and command[command.index("--nnodes") + 1] == "1"
    assert command[command.index("--rdzv-endpoint") + 1].startswith("127.0.0.1:")
    assert command[-7:] == ["-m", "flows.cli", "pretrain", "--stage", "s1", "--params", "p.yaml"]


@pytest.mark.slow
def test_cssl_pretrain_relaunches_through_torchrun_and_rank0_alone_writes(tmp_path, monkeypatch):
    project = make_stage_project(tmp_path)
    monkeypatch.chdir(project)
    params = stage_params("finetune")
    params["ssl"]["distributed"] = {"nproc_per_node": 2, "nnodes": 1, "rdzv_endpoint": None, "backend": "auto"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_init(ProjectConfig.from_params(params))
    experiment = f"torchrun-{tmp_path.name}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CSSL_MLFLOW_EXPERIMENT": experiment}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "pretrain", "--stage", "s1", "--params", "params.yaml"],
        cwd=project, env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "2 processes through torchrun" in done.stdout
    assert done.stdout.count("pretrain s1: 2 epochs") == 1, done.stdout  # rank 0 reports, rank 1 is silent
    assert (project / "data/models/s1/model.pt").is_file()
    summary = json.loads((project / "data/metrics/pretrain-s1.json").read_text())
    assert summary["epochs"] == 2
    (directory,) = [p for p in (project / "data/checkpoints/s1").iterdir() if p.is_dir()]
    assert torch.load(directory / "last.pt", weights_only=True)["fingerprint"]["world_size"] == 2
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert len(runs) == 1, [r.info.run_name for r in runs]  # one MLflow run, not one per rank
