"""The DVC DAG end to end on a tiny phantom: first run, no-op re-run, one-branch re-run, privacy, MLflow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from tests.helpers import find_leaks, make_tiny_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
RAN = re.compile(r"Running stage '([^']+)'")


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CSSL_KEY_SECRET", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("dvc") / "project")
    started = time.perf_counter()
    first = run([str(BIN / "cssl"), "repro"], root)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    return {"root": root, "first": first, "seconds": time.perf_counter() - started}


def test_first_repro_runs_every_stage_and_writes_outputs(project):
    root = project["root"]
    ran = set(RAN.findall(project["first"].stdout))
    expected = {f"{kind}@{c}" for kind in ("demo-data", "ingest") for c in ("phantom_a", "phantom_b")}
    expected |= {f"{kind}@{c}-{w}" for kind in ("window", "quality") for c in ("phantom_a", "phantom_b")
                 for w in ("mediastinal", "lung")}
    assert ran == expected
    for cohort in ("phantom_a", "phantom_b"):
        files = pd.read_parquet(root / f"data/interim/{cohort}/files.parquet")
        found = [p for p in (root / f"data/raw/{cohort}").rglob("*") if p.is_file()]
        assert len(files) == len(found)
        for window in ("mediastinal", "lung"):
            out = root / f"data/windowed/{cohort}-{window}"
            slices = np.load(out / "slices.npy", mmap_mode="r")
            index = pd.read_parquet(out / "index.parquet")
            assert slices.dtype == np.uint8 and slices.shape[1:] == (32, 32)
            assert len(index) == slices.shape[0] == 20
            report = json.loads((root / f"data/quality/{cohort}-{window}.json").read_text())
            assert report["passed"] is True
    assert (root / "dvc.lock").exists()


def test_second_repro_does_nothing_quickly(project):
    started = time.perf_counter()
    again = run([sys.executable, "-m", "dvc", "repro"], project["root"])
    elapsed = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert RAN.findall(again.stdout) == []
    assert elapsed < 20, f"no-op repro took {elapsed:.1f}s"


def test_changing_one_window_reruns_only_its_branch(project):
    root = project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["window"]["presets"]["lung"]["level"] = -550
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run([sys.executable, "-m", "dvc", "repro"], root)
    assert result.returncode == 0, result.stdout[-3000:]
    assert set(RAN.findall(result.stdout)) == {
        "window@phantom_a-lung", "window@phantom_b-lung", "quality@phantom_a-lung", "quality@phantom_b-lung"
    }
    meta = json.loads((root / "data/windowed/phantom_a-lung/meta.json").read_text())
    assert meta["window"]["level"] == -550


def test_no_identifier_leaves_ingestion(project):
    root = project["root"]
    needles = {"PHIMARK"}
    for path in (root / "data/raw").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        needles |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.PatientID)}
    outputs = [p for p in (root / "data").iterdir() if p.name != "raw"]
    outputs += [root / "dvc.lock", root / "mlflow.db"]
    outputs += [p for p in [root / "mlartifacts"] if p.exists()]
    assert find_leaks(outputs, needles) == []
    logs = project["first"].stdout + project["first"].stderr
    assert not [n for n in needles if n in logs]


def test_stage_runs_are_grouped_under_one_parent(project):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project['root'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cssl-pipeline"], output_format="pandas")
    parents = runs[runs["tags.mlflow.runName"] == "pipeline"]
    assert len(parents) >= 1
    first_parent = parents.sort_values("start_time").iloc[0]["run_id"]
    children = runs[runs["tags.mlflow.parentRunId"] == first_parent]
    assert len(children) == 12
    ingest = children[children["tags.cssl.stage"] == "ingest@phantom_a"].iloc[0]
    assert ingest["metrics.n_series"] == 2
    window = children[children["tags.cssl.stage"] == "window@phantom_a-lung"].iloc[0]
    assert window["metrics.slices"] == 20 and window["params.level"] == "-600.0"
