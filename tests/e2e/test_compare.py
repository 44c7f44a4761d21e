"""`cssl compare` on a tiny config: two strategies x two seeds as queued DVC experiments -> table + plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def compare(root: Path, env: dict, *args: str, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "cssl"), "compare", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_compare_tiny_two_strategies_two_seeds(tiny_pipeline, tmp_path):
    # from the finished tiny pipeline: the experiments change only seeds and probes, so DVC takes the data stages
    # (demo-data .. quality) from the cache and runs init, both continual stages and evaluation for each seed
    root = tiny_pipeline.copy(tmp_path / "project")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=root, check=True)
    # two experiments side by side (two DVC queue workers, one core each), as the cpu benchmark runs
    result = compare(root, env, "--config", "tiny", "--jobs", "2", timeout=1500)
    progress = [line for line in result.stdout.splitlines() if "experiments finished" in line]
    assert progress[-1].startswith("compare: 4/4 experiments finished") and len(progress) >= 2  # progress shown
    table = (root / "reports/compare.md").read_text()
    main_table = table.split("## Every probe")[0]
    rows = [line for line in main_table.splitlines() if line.startswith(("| finetune", "| latent_replay"))]
    assert len(rows) == 2 and all("| 2/0" in row for row in rows), table
    assert "| latent_replay | false |" in table and "| finetune | false |" in table
    assert "| (random encoder) |" in table.split("## Every probe")[1]
    figures = {p.name for p in (root / "reports/figures").glob("*.png")}
    # loss curves come from the experiments' committed histories (the tiny buffers are too small for a t-SNE)
    assert {"R_recon_finetune.png", "R_recon_latent_replay.png", "auc_per_stage.png", "loss_curves.png"} <= figures
    # the buffers behind buffer_tsne.png: read back from the DVC cache at each experiment's commit
    from flows.compare import collect
    from flows.experiment_files import ExperimentFiles

    _, revs = collect(root, ["finetune-s0", "latent_replay-s0"])
    files = ExperimentFiles(root, revs)
    latent = files.buffer("latent_replay-s0", "s2")
    assert latent is not None and latent.kind == "latent" and len(latent) > 0
    assert set(latent.stage.tolist()) == {"s1", "s2"}
    assert files.buffer("finetune-s0", "s2") is None  # finetune keeps nothing
    assert files.text("finetune-s0", "data/metrics/pretrain-s1-history.csv").startswith("epoch,")
    # stage 1 trained once per seed: the first strategy of a seed trained it, the other took the shared run
    trained = json.loads(files.text("finetune-s0", "data/metrics/pretrain-s1.json"))
    taken = json.loads(files.text("latent_replay-s0", "data/metrics/pretrain-s1.json"))
    assert trained["epochs_this_run"] > 0 and taken["epochs_this_run"] == 0
    assert taken["val_mae"] == trained["val_mae"] and taken["steps"] == trained["steps"]
    assert len(list((root / ".cssl/share/checkpoints").iterdir())) == 2  # one first stage per seed
    assert "## Sanity" in table and "## Plasticity" in table
    recorded = json.loads((root / "reports/compare-run.json").read_text())
    assert recorded["config"] == "tiny" and recorded["wall_seconds"] > 0 and recorded["jobs"] == 2
    assert "2 experiments side by side" in table

    # --collect-only rebuilds the same table from the finished experiments and keeps the measured time
    compare(root, env, "--config", "tiny", "--collect-only", timeout=600)
    assert (root / "reports/compare.md").read_text() == table

    # A `dvc queue stop` sent while no worker runs stays in the broker and stops the next worker after one
    # experiment (earlier versions sent one after every run); the next comparison must still run both.
    subprocess.run([sys.executable, "-m", "dvc", "queue", "stop"], cwd=root, env=env, check=True, capture_output=True)
    later = compare(root, env, "--config", "tiny_again", timeout=900)
    progress = [line for line in later.stdout.splitlines() if "experiments finished" in line]
    assert progress[-1].startswith("compare: 2/2 experiments finished"), later.stdout[-2000:]
    assert "no queue worker alive" in later.stdout  # the stale stop did hit: the scenario is really exercised
    assert "| finetune | false | 2/0 |" in (root / "reports/compare.md").read_text()
