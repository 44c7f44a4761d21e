"""A damaged checkpoint no longer breaks `cssl repro`: the stage resumes from the previous checkpoint, with the
same weights, and keeps the damaged file aside. Also: an oversized replay.budget is reported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def cssl_repro(root: Path, *targets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([str(BIN / "cssl"), "repro", *targets], cwd=root, env=env, capture_output=True, text=True)


def test_truncated_last_checkpoint_resumes_from_the_previous_one(tiny_pipeline, tmp_path):
    params = tiny_params()
    params["replay"]["budget"] = 5000
    root = tiny_pipeline.copy(tmp_path / "project", params)  # only export@s1 reads replay.budget

    first = cssl_repro(root, "export@s1")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    n = json.loads((root / "data/metrics/export-s1.json").read_text())["candidates"]
    assert output.count("warning: replay.budget") == 1
    assert f"warning: replay.budget 5000 is larger than the {n} training slices of stage s1; keeping all {n}" in output
    weights = torch.load(root / "data/models/s1/model.pt", weights_only=True)

    (run_dir,) = (root / "data/checkpoints/s1").iterdir()
    last = run_dir / "last.pt"
    damaged = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(damaged)  # what a full disk or an interrupted copy leaves

    second = cssl_repro(root, "export@s1")
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert "Running stage 'pretrain@s1'" in output  # DVC saw the checkpoint change and re-ran the stage
    warnings = [line for line in output.splitlines() if "does not load" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith("moved aside to last.pt.corrupt-1; resuming from prev.pt (epoch 1)")
    assert (run_dir / "last.pt.corrupt-1").read_bytes() == damaged
    metrics = json.loads((root / "data/metrics/pretrain-s1.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_this_run"] == 1 and metrics["epochs"] == 2
    resumed = torch.load(root / "data/models/s1/model.pt", weights_only=True)
    assert resumed.keys() == weights.keys() and all(torch.equal(resumed[k], weights[k]) for k in weights)
