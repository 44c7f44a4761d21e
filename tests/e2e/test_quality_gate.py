"""The series-level quality gate under a real `dvc repro`: one cropped series is left out, the DAG goes on.

A tiny project with two cohorts: the phantom `phantom_a` (screened only, to show what does not re-run)
and `mixed`, real NSCLC chest CTs with one series cropped to the body interior
(tests/tasks/cropped_series.py). Then: the crop is excluded and training runs; loosening `mixed`'s own
override changes only `mixed`'s stages; `on_fail: stop`, an unmet `min_series` and a missing override
entry each stop with one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import tiny_params
from tests.tasks.cropped_series import write_cohort
from tests.tiny_pipeline import run_in_project as run

pytestmark = pytest.mark.slow
RAN = re.compile(r"Running stage '([^']+)'")
GATES = ["quality@mixed-lung", "screen@phantom_a"]


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], root)


def edit_quality(root: Path, cohort_entry: dict | None) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    if cohort_entry is None:
        del params["quality"]["cohorts"]["mixed"]
    else:
        params["quality"]["cohorts"]["mixed"] = cohort_entry
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def changed_stages(root: Path) -> set[str]:
    """Which stages of both cohorts' gates and of training `dvc status` says are out of date."""
    stages = [f"{kind}@{c}" for kind in ("ingest", "screen") for c in ("phantom_a", "mixed")]
    status = dvc(root, "status", "--json", *stages, "window@mixed-lung", "quality@mixed-lung", "pretrain@s1")
    assert status.returncode == 0, status.stderr
    return set(json.loads(status.stdout))


@pytest.fixture(scope="module")
def project(tiny_pipeline, tmp_path_factory):
    params = tiny_params()
    params["ingest"]["cohorts"] = ["phantom_a", "mixed"]
    params["window"]["apply"] = ["lung"]
    params["quality"]["cohorts"] = {"phantom_a": {}, "mixed": {}}
    params["continual"]["stages"] = {"s1": {"prev": "init", "cohort": "mixed", "window": "lung"}}
    # what `cssl check` (run by every stage command) requires of the stages this test never runs
    params["privacy"]["attacker_cohort"] = "phantom_a"  # ingested, and no stage trains on it
    params["eval"]["tasks"] = {k: t for k, t in params["eval"]["tasks"].items()
                               if t["cohort"] in params["ingest"]["cohorts"] and t["window"] == "lung"}
    root = tiny_pipeline.copy(tmp_path_factory.mktemp("gate") / "project", params)  # phantom_a's stages: up to date
    crop = write_cohort(root / "data/raw/mixed")
    first = dvc(root, "repro", "pretrain@s1", *GATES)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    return {"root": root, "first": first, "crop": crop}


def test_cropped_series_is_excluded_and_training_goes_on(project):
    root, first, crop = project["root"], project["first"], project["crop"]
    assert {"screen@mixed", "window@mixed-lung", "quality@mixed-lung", "pretrain@s1"} <= set(RAN.findall(first.stdout))
    report = json.loads((root / "data/quality/mixed.screen.json").read_text())
    assert (report["passed"], report["n_series"], report["n_passed"], report["n_excluded"]) == (True, 3, 2, 1)
    [excluded] = [e for e in report["series"] if e["outcome"] == "excluded"]
    assert excluded["files"] == crop["files"]
    assert excluded["failures"][0]["reason"].startswith(f"hu_min {crop['hu_min']:g} HU: no air in the volume")
    index = pd.read_parquet(root / "data/windowed/mixed-lung/index.parquet")
    assert excluded["series_key"] not in set(index["series_key"]) and index["series_key"].nunique() == 2
    [line] = [ln for ln in first.stderr.splitlines() if ln.startswith("warning: screen mixed:")]
    assert excluded["series_key"] in line and f"files: cropped/ ({len(crop['files'])} files)" in line
    assert "quality.cohorts.mixed.air_hu_min" in line
    assert json.loads((root / "data/quality/phantom_a.screen.json").read_text())["n_excluded"] == 0
    assert (root / "data/models/s1/model.pt").exists()


def test_a_cohort_override_reruns_only_that_cohorts_stages(project):
    root = project["root"]
    edit_quality(root, {"plausible_hu_max": [50, 4000]})  # changes no outcome
    assert changed_stages(root) == {"screen@mixed", "quality@mixed-lung"}
    result = dvc(root, "repro", *GATES)
    assert result.returncode == 0, result.stdout[-3000:]
    # the passed list and the slice report are unchanged, so neither windowing nor training is redone
    # `check` re-runs on any params.yaml edit (and re-writes its stamp to the same bytes)
    assert set(RAN.findall(result.stdout)) == {"check", "screen@mixed", "quality@mixed-lung"}
    assert changed_stages(root) == set()

    edit_quality(root, {"air_hu_min": [-1200, -100]})  # lets the crop through
    assert changed_stages(root) == {"screen@mixed", "quality@mixed-lung"}
    result = dvc(root, "repro", *GATES)
    assert result.returncode == 0, result.stdout[-3000:]
    assert set(RAN.findall(result.stdout)) == {"check", "screen@mixed", "window@mixed-lung", "quality@mixed-lung"}
    assert pd.read_parquet(root / "data/windowed/mixed-lung/index.parquet")["series_key"].nunique() == 3
    assert "warning: screen" not in result.stderr
    assert changed_stages(root) == {"pretrain@s1"}  # trains again on the three series when asked


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"on_fail": "stop"}, "error: quality screen stopped cohort 'mixed' (on_fail: stop): 1 of 3 series"),
        ({"min_series": 1.0}, "error: quality screen failed for cohort 'mixed': 2 of 3 series passed"),
    ],
    ids=["stop", "min-series"],
)
def test_a_stopped_cohort_is_one_line(project, entry, expected):
    root = project["root"]
    edit_quality(root, entry)
    result = dvc(root, "repro", "screen@mixed")
    assert result.returncode != 0
    errors = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (root / "data/quality/mixed.passed.json").exists()


def test_a_cohort_without_an_entry_is_refused_before_its_stage_runs(project):
    """A missing quality.cohorts entry (DVC could not resolve the stage's params) stops at the `check` stage with
    `cssl check`'s one line, before the screen runs or loses its outputs."""
    root = project["root"]
    edit_quality(root, None)
    result = dvc(root, "repro", "screen@mixed")
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: params.yaml quality.cohorts.mixed")]
    assert len(errors) == 1 and "needs an entry" in errors[0], result.stderr[-2000:]
    assert RAN.findall(result.stdout) == ["check"]  # refused before the screen ran
    edit_quality(root, {})
