"""The privacy gate under `dvc repro`: a leaking buffer stops the DAG before the next stage trains on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
RAN = re.compile(r"Running stage '([^']+)'")


def _repro(root: Path, *targets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=root, env=env,
                          capture_output=True, text=True)


def _md5s(directory: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(directory)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


def test_the_gate_stops_the_next_stage_below_the_measured_figure_and_a_threshold_edit_retrains_nothing(
    tiny_pipeline, tmp_path
):
    params = tiny_params()
    params["window"]["apply"] = ["lung"]
    params["eval"]["tasks"] = {k: t for k, t in params["eval"]["tasks"].items() if t["window"] == "lung"}
    params["continual"]["stages"] = {"s1": {"prev": "init", "cohort": "phantom_a", "window": "lung"},
                                     "s2": {"prev": "s1", "cohort": "phantom_b", "window": "lung"}}
    params["ssl"]["train"]["epochs"] = 1
    params["privacy"]["gate"] = {"max_ssim_p95": 0.01, "max_reid_auc": None, "mode": "fail"}
    root = tiny_pipeline.copy(tmp_path / "project", params)  # its lung-window data stages are up to date

    stopped = _repro(root, "pretrain@s2")
    assert stopped.returncode != 0
    ran = RAN.findall(stopped.stdout)
    assert {"audit@s1", "gate@s1"} <= set(ran) and "pretrain@s2" not in ran
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: privacy gate")]
    assert len(errors) == 1 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert "buffer s1" in errors[0] and "data/privacy/s1.png" in errors[0] and "max_ssim_p95 0.01" in errors[0]
    measured = json.loads((root / "data/privacy/s1.gate.json").read_text())["ssim_p95"]
    assert measured > 0.01 and not (root / "data/privacy/s1.cleared.json").exists()  # no clearance, no training

    # loosened: the verdict is re-decided from the figures on disk; the attacks do not run again
    params["privacy"]["gate"]["max_ssim_p95"] = 1.0
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    passed = _repro(root, "pretrain@s2")
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    ran = RAN.findall(passed.stdout)
    assert {"gate@s1", "pretrain@s2"} <= set(ran) and "audit@s1" not in ran, ran
    verdict = json.loads((root / "data/privacy/s1.gate.json").read_text())
    assert verdict["passed"] is True and verdict["ssim_p95"] == measured

    # a threshold edit that keeps the buffer usable (new-user finding 4) re-runs the gate only: no retraining
    model = _md5s(root / "data/models/s2")
    params["privacy"]["gate"].update(max_ssim_p95=0.999, max_reid_auc=0.99)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    edited = _repro(root, "pretrain@s2")
    assert edited.returncode == 0, edited.stdout[-3000:] + edited.stderr[-3000:]
    assert RAN.findall(edited.stdout) == ["check", "gate@s1"], edited.stdout[-3000:]  # check: any params edit
    assert _md5s(root / "data/models/s2") == model
    assert json.loads((root / "data/privacy/s1.gate.json").read_text())["max_reid_auc"] == 0.99
