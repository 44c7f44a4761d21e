"""Stage demo-data@<cohort> (tasks/demo_data.py) reading the typed config: the cohort written is the one its
params block describes, byte for byte, and MLflow gets the block as params.yaml spells it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssl_core.config import ProjectConfig
from cssl_core.demo.phantom import PhantomConfig, write_phantom_cohort
from tasks.demo_data import run_demo_data
from tasks.tracking import flatten
from tests.helpers import tiny_params

EXPERIMENT = "demo-data-tests"
BLOCK = {"source": "phantom", "seed": 5, "n_patients": 1, "n_slices": 4, "matrix": 32, "pixel_spacing_mm": 5.0}


@pytest.fixture(autouse=True)
def mlflow_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("CSSL_MLFLOW_EXPERIMENT", EXPERIMENT)
    monkeypatch.delenv("CSSL_MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)


def config() -> ProjectConfig:
    params = tiny_params()
    params["data"]["demo"]["phantom_a"] = dict(BLOCK)
    return ProjectConfig.from_params(params)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_phantom_cohort_is_the_one_its_block_describes(tmp_path):
    summary = run_demo_data(tmp_path / "staged", "phantom_a", config())
    settings = {k: v for k, v in BLOCK.items() if k != "source"}
    direct = write_phantom_cohort(tmp_path / "direct", PhantomConfig.from_mapping(settings))
    assert summary == direct and summary["patients"] == 1 and summary["slices"] == 4
    staged, expected = files(tmp_path / "staged"), files(tmp_path / "direct")
    assert staged == expected and len(staged) == summary["files"]


def test_mlflow_gets_the_block_as_written_and_the_counts(tmp_path):
    import mlflow

    summary = run_demo_data(tmp_path / "raw", "phantom_a", config())
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.`cssl.stage` = 'demo-data@phantom_a'")
    [run] = [row for _, row in runs.iterrows()]
    logged = {k.removeprefix("params."): v for k, v in run.items() if k.startswith("params.") and v is not None}
    assert logged == {k: str(v) for k, v in flatten(BLOCK).items()}  # no PhantomConfig default (finding_rate)
    assert run["metrics.slices"] == summary["slices"] and run["tags.cssl.cohort"] == "phantom_a"


def test_an_unknown_cohort_names_the_known_ones(tmp_path):
    with pytest.raises(KeyError, match=r"no demo cohort 'phantom_z' in params.yaml data.demo \(known: phantom_a, "):
        run_demo_data(tmp_path / "raw", "phantom_z", config())
    assert not (tmp_path / "raw").exists()
