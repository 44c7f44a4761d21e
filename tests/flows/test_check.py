"""`cssl check`, and every stage command refusing a bad params.yaml before any work, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cssl_core.config import ConfigError
from flows.cli import app
from tests.helpers import REPO_ROOT, one_error_line

REAL = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def project_with(tmp_path: Path, edit=None, name: str = "params.yaml") -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    if edit is not None:
        edit(params)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def lr_fast(params: dict) -> None:
    params["ssl"]["train"]["lr"] = "fast"


def prev_s9(params: dict) -> None:
    params["continual"]["stages"]["s2"]["prev"] = "s9"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m flows.cli` with this checkout first on the path (the venv's `cssl` may point at another one)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("CSSL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_check_accepts_the_shipped_params_yaml(tmp_path):
    project_with(tmp_path)
    result = cli("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("params.yaml: ok (2 stages: s1 <- init, s2 <- s1; strategy latent_replay; ")
    assert len(result.stdout.splitlines()) == 1 and not result.stderr.strip()


def test_check_refuses_bad_params_with_one_line_and_exit_2(tmp_path):
    project_with(tmp_path, lr_fast)
    result = cli("check", cwd=tmp_path)
    expected = "error: params.yaml ssl.train.lr: 'fast' is not allowed: ssl.train.lr must be a number"
    assert one_error_line(result) == expected
    assert not result.stdout
    project_with(tmp_path, prev_s9, name="conf/other.yaml")
    named = one_error_line(cli("check", "--params", "conf/other.yaml", cwd=tmp_path))
    assert named.startswith("error: conf/other.yaml continual.stages.s2.prev: 's9' is not allowed: ")


def test_a_stage_command_refuses_bad_params_at_once_and_touches_nothing(tmp_path):
    project_with(tmp_path, prev_s9)
    started = time.perf_counter()
    result = cli("pretrain", "--stage", "s1", cwd=tmp_path)
    elapsed = time.perf_counter() - started
    line = one_error_line(result)
    assert line.startswith("error: params.yaml continual.stages.s2.prev: 's9' is not allowed: ") and "init, s1" in line
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no data/, no MLflow store


STAGE_COMMANDS = [
    ["demo-data", "raw", "--cohort", "phantom_a"],
    ["ingest", "--input", "raw", "--output", "out"],
    ["screen", "--cohort", "phantom_a"],
    ["window", "--cohort", "phantom_a", "--window", "lung"],
    ["quality", "--cohort", "phantom_a", "--window", "lung"],
    ["init-model"],
    ["pretrain", "--stage", "s1"],
    ["export", "--stage", "s1"],
    ["audit", "--stage", "s1"],
    ["evaluate", "--stage", "s1"],
    ["report"],
    ["dag"],
    ["repro"],
    ["compare"],
    ["flow", "run"],
]


@pytest.mark.parametrize("args", STAGE_COMMANDS, ids=[" ".join(a[:1] + a[1:2]) for a in STAGE_COMMANDS])
def test_every_stage_command_checks_params_first(tmp_path, monkeypatch, args):
    project_with(tmp_path, prev_s9)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    assert result.exception.path == "continual.stages.s2.prev"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_bad_compare_config_is_a_warning_of_check_and_an_error_of_compare(tmp_path, monkeypatch):
    def gpu_misfit(params: dict) -> None:
        params["compare"]["configs"]["gpu"]["overrides"]["window.size"] = 96  # with preset base (224px)

    project_with(tmp_path, gpu_misfit)
    monkeypatch.chdir(tmp_path)
    checked = CliRunner().invoke(app, ["check"])
    assert checked.exit_code == 0 and checked.stdout.startswith("params.yaml: ok (")
    assert "warning: params.yaml compare.configs.gpu.overrides: " in checked.stderr
    refused = CliRunner().invoke(app, ["compare", "--config", "gpu"])
    assert isinstance(refused.exception, ConfigError) and refused.exception.path == "compare.configs.gpu.overrides"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing queued
