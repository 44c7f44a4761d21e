"""evaluate: a progress line per task x probe, and an output that a re-run reproduces byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cssl_core.config import ProjectConfig
from cssl_core.models import build_mae
from cssl_core.models.io import save_model
from tasks import tracking
from tasks.evaluate import probe_row, run_evaluate, timing_path
from tests.tasks.stage_project import stage_params

SIZE, PATCH = 32, 8


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One windowed cohort with a learnable label and lesion masks, the random encoder, a sqlite MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    rng = np.random.default_rng(0)
    n, patients = 24, 6
    slices = rng.integers(0, 60, size=(n, SIZE, SIZE), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    labels = np.arange(n) % 2 == 0
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, SIZE - 8, size=2)
        slices[i, y : y + 8, x : x + 8] = 240
        masks[i, y : y + 8, x : x + 8] = 2
    windowed = tmp_path / "data/windowed/phantom_a-mediastinal"
    windowed.mkdir(parents=True)
    np.save(windowed / "slices.npy", slices)
    np.save(windowed / "masks.npy", masks)
    index = pd.DataFrame({"patient_key": [f"p{i % patients}" for i in range(n)], "has_lesion": labels})
    index.to_parquet(windowed / "index.parquet")
    torch.manual_seed(0)
    model = build_mae("tiny", img_size=SIZE, patch_size=PATCH, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
    save_model(tmp_path / "data/models/init", model, {"model_config": model.config.to_dict(), "strategy": None})
    return tmp_path


def _config() -> ProjectConfig:
    """The tiny project with one stage on the fixture's cohort and window, and one task on its lesions."""
    params = stage_params("finetune")
    task = {"cohort": "phantom_a", "window": "mediastinal", "label": "has_lesion", "mask_class": 2}
    params["eval"] = {
        "seed": 0,
        "probes": ["linear", "token"],
        "fractions": [1.0],
        "folds": 2,
        "recon_slices": 8,
        "tasks": {"lesion": task},
    }
    return ProjectConfig.from_params(params)


def test_probe_row_prints_one_line_per_task_and_probe(project, capsys):
    from cssl_core.models.io import load_model

    model, _ = load_model(Path("data/models/init"))
    row = probe_row(model.eval(), _config(), with_pixels=True, label="evaluate@init")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"evaluate@init probe {i}/3" for i in (1, 2, 3)]
    shown = [line.split(": ")[1].split(" auc")[0] for line in lines]
    assert shown == ["lesion linear", "lesion token", "lesion pixels"]
    auc = row["linear"]["lesion"]["1.0"]["auc"]
    assert f"auc@1.0={auc:.3f}" in lines[0]


def test_evaluate_output_holds_no_timing_and_a_rerun_rewrites_it_identically(project, capsys):
    config = _config()
    run_evaluate("init", config)
    out = Path("data/eval/init.json")
    first = out.read_bytes()
    row = json.loads(first)
    assert "seconds" not in json.dumps(row)
    assert set(row) == {"stage", "index", "strategy", "recon", "recon_own", "cka", "probes"}
    assert row["probes"]["pixels"]["lesion"]["1.0"]["auc"] >= 0.0
    timing = json.loads(timing_path("init").read_text())
    assert timing["seconds"] > 0

    run_evaluate("init", config)
    assert out.read_bytes() == first

    import mlflow

    runs = mlflow.search_runs(experiment_names=[tracking.DEFAULT_EXPERIMENT], output_format="pandas")
    assert (runs["metrics.seconds"] > 0).all() and len(runs) == 2  # the time went to MLflow instead
    # the eval block as params.yaml spells it, flattened: the params every evaluate run has logged
    logged = {k.removeprefix("params."): v for k, v in runs.iloc[0].items() if k.startswith("params.")}
    assert logged == {
        "stage": "init",
        "seed": "0",
        "probes": "['linear', 'token']",
        "fractions": "[1.0]",
        "folds": "2",
        "recon_slices": "8",
        "tasks.lesion.cohort": "phantom_a",
        "tasks.lesion.window": "mediastinal",
        "tasks.lesion.label": "has_lesion",
        "tasks.lesion.mask_class": "2",
    }


def test_knn_and_finetune_run_through_evaluate_with_the_budget_of_params_and_rerun_identically(project, capsys):
    """The new probes chosen in eval.probes: evaluate builds the images and hands over the model only for the
    fine-tune probe, rows carry both probes' fold-mean metrics per fraction, and the output is byte-stable."""
    params = stage_params("finetune")
    task = {"cohort": "phantom_a", "window": "mediastinal", "label": "has_lesion", "mask_class": 2}
    params["eval"] = {
        "seed": 0,
        "probes": ["knn", "finetune"],
        "fractions": [0.5, 1.0],
        "folds": 2,
        "recon_slices": 8,
        "tasks": {"lesion": task},
        "finetune": {"steps": 4, "batch_size": 8, "lr": 1.0e-3, "head_lr": 1.0e-2},
    }
    config = ProjectConfig.from_params(params)
    assert config.eval.finetune.steps == 4
    row = run_evaluate("init", config)
    first = Path("data/eval/init.json").read_bytes()
    assert set(row["probes"]) == {"knn", "finetune", "pixels"}
    for probe in ("knn", "finetune"):
        assert set(row["probes"][probe]["lesion"]) == {"0.5", "1.0"}
        assert 0.0 <= row["probes"][probe]["lesion"]["1.0"]["auc"] <= 1.0
    assert row["probes"]["knn"]["lesion"]["1.0"]["auc"] > 0.9  # the bright squares are near each other
    lines = capsys.readouterr().out.splitlines()
    assert any("lesion finetune auc@0.5=" in line for line in lines)
    run_evaluate("init", config)
    assert Path("data/eval/init.json").read_bytes() == first
