"""The slice-level quality gate (stage quality@<cohort>-<window>) on realistic windowed directories.

Good data passes; each corruption fails by name, printed one line per failure, with a one-line error.
The series-level rules moved to the screen stage: tests/tasks/test_screen.py.

Great Expectations takes seconds to import and an MLflow SQLite store seconds to create, so the store
and the good windowed directory are module-scoped; each run_quality call then costs a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cssl_core.config import ProjectConfig
from cssl_core.quality.report import QualityGateError
from tasks.quality import run_quality
from tests.tasks.quality_fixtures import quality_config, quality_params

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "quality-tests"
PARAMS = quality_params("nsclc", html_report=True)
N_SERIES, SLICES_PER_SERIES, SIZE = 4, 20, 24
SERIES = [f"s{i}-{h}" for i, h in enumerate(("9f3c2a71", "04be8d55", "c1a7e302", "7d60f9b4"))]
PATIENTS = ["p-5e21", "p-5e21", "p-a093", "p-b7c4"]


def good_slices(dtype: str = "uint8") -> np.ndarray:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 256, size=(N_SERIES * SLICES_PER_SERIES, SIZE, SIZE), dtype=np.uint8)
    return values if dtype == "uint8" else (values / 255.0).astype(np.float16)


def slice_owner(i: int) -> str:
    return SERIES[i // SLICES_PER_SERIES]


def write_windowed(root: Path, slices: np.ndarray, n_slices: int | None = None) -> Path:
    """A windowed directory as the window stage writes it: slices.npy, index.parquet, meta.json."""
    root.mkdir(parents=True)
    np.save(root / "slices.npy", slices)
    n = len(slices)
    index = pd.DataFrame(
        {
            "patient_key": [PATIENTS[i // SLICES_PER_SERIES] for i in range(n)],
            "series_key": [slice_owner(i) for i in range(n)],
            "slice_index": [i % SLICES_PER_SERIES for i in range(n)],
            "z_mm": [3.0 * (i % SLICES_PER_SERIES) for i in range(n)],
            "has_gtv": [None] * n,
            "has_mask": [False] * n,
        }
    )
    index.to_parquet(root / "index.parquet", index=False)
    dtype = str(slices.dtype)
    meta = {
        "cohort": "nsclc",
        "window": {"name": "lung", "width": 1500, "level": -600},
        "dtype": dtype,
        "size": SIZE,
        "n_slices": n if n_slices is None else n_slices,
        "n_series": N_SERIES,
        "n_series_excluded": 1,
        "n_patients": 3,
        "stored_range": [0.0, 255.0] if dtype == "uint8" else [0.0, 1.0],
        "has_masks": False,
        "labels": {},
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    return root


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def mlflow_store(monkeypatch, tracking_dir, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracking_dir}/mlflow.db")
    monkeypatch.setenv("CSSL_MLFLOW_EXPERIMENT", EXPERIMENT)
    monkeypatch.delenv("CSSL_MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)  # tracking.configure puts the artifact root under the working directory


@pytest.fixture(scope="module")
def windowed(tmp_path_factory) -> Path:
    return write_windowed(tmp_path_factory.mktemp("windowed") / "nsclc-lung", good_slices())


def gate(
    tmp_path: Path, windowed_dir: Path, params: dict | ProjectConfig | None = None, files_path: Path | None = None
):
    """Run the stage with a quality block (in the tiny configuration) or a whole config; returns (report read back
    from disk, QualityGateError or None, stage name)."""
    output = tmp_path / "quality" / "nsclc-lung.json"
    stage = f"quality@{tmp_path.name}"  # unique per test, so the MLflow run can be found by name
    config = params if isinstance(params, ProjectConfig) else quality_config(params or PARAMS)
    error = None
    try:
        returned = run_quality(windowed_dir, output, config, stage_name=stage, files_path=files_path)
    except QualityGateError as caught:
        error, returned = caught, caught.report
    report = json.loads(output.read_text())
    assert report == returned
    return report, error, stage


def hard_failures(report: dict) -> list[dict]:
    return [f for f in report["failures"] if f["severity"] == "hard"]


def mlflow_run(stage: str) -> pd.Series:
    import mlflow

    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string=f"tags.`cssl.stage` = '{stage}'")
    assert len(runs) == 1
    return runs.iloc[0]


def test_good_cohort_passes_and_is_logged(tmp_path, windowed, capsys):
    report, error, stage = gate(tmp_path, windowed)
    assert error is None
    assert report["passed"] is True and report["n_hard_failed"] == 0 and report["n_soft_failed"] == 0
    assert report["failures"] == []
    assert report["n_passed"] == report["n_expectations"] == 6
    assert report["suites"] == {"slices": {"n_rows": N_SERIES * SLICES_PER_SERIES, "n_expectations": 6,
                                           "n_passed": 6}}
    assert (report["n_series"], report["n_series_excluded"]) == (N_SERIES, 1)  # from meta.json
    assert (report["cohort"], report["window"]) == ("nsclc", "lung")
    assert "seconds" not in json.dumps(report)  # timings go to MLflow only, never into a DVC output
    assert capsys.readouterr().err == ""
    run = mlflow_run(stage)
    assert run["status"] == "FINISHED"
    assert run["metrics.passed"] == 1.0 and run["metrics.n_hard_failed"] == 0.0
    assert run["metrics.n_expectations"] == 6.0 and run["metrics.n_passed"] == 6.0
    assert run["metrics.seconds"] > 0
    assert run["params.not_constant_mostly"] == "0.9"


def test_cohort_override_applies_to_its_own_cohort_only(tmp_path, windowed):
    slices = good_slices()
    slices[:40] = 0  # half the cohort constant: fails not_constant_mostly 0.9, passes 0.4
    root = write_windowed(tmp_path / "nsclc-lung", slices)
    loose = {**PARAMS, "cohorts": {"nsclc": {"not_constant_mostly": 0.4}, "other": {}}}
    report, error, _ = gate(tmp_path / "loose", root, loose)
    assert error is None and report["passed"] is True and report["n_soft_failed"] == 1
    strict_here = {**PARAMS, "not_constant_mostly": 0.4, "cohorts": {"nsclc": {"not_constant_mostly": 0.9}}}
    report, error, _ = gate(tmp_path / "strict", root, strict_here)
    assert error is not None and report["passed"] is False


def test_html_pages_are_written_next_to_the_report_unless_disabled(tmp_path, windowed):
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    gate(on, windowed)
    pages = sorted(p.name for p in (on / "quality").glob("*.html"))
    assert pages == ["nsclc-lung.slices.html"]
    text = (on / "quality" / pages[0]).read_text()
    assert "Expectation Validation Result" in text and "std" in text
    gate(off, windowed, {**PARAMS, "html_report": False})
    assert list((off / "quality").glob("*.html")) == []


def _nan_slice(slices: np.ndarray) -> list[int]:
    slices[45, 3, 4] = np.nan
    return [45]


def _mostly_constant(slices: np.ndarray) -> list[int]:
    bad = list(range(20, 40)) + list(range(60, 80))  # half the cohort: two whole series
    slices[bad] = 0
    return bad


def _above_range(slices: np.ndarray) -> list[int]:
    slices[5, 0, 0] = 1.5
    return [5]


def _below_range(slices: np.ndarray) -> list[int]:
    slices[66, 1, 1] = -0.25
    return [66]


@pytest.mark.parametrize(
    ("dtype", "corrupt", "expectation"),
    [
        ("float16", _nan_slice, "expect_column_values_to_be_in_set(finite)"),
        ("uint8", _mostly_constant, "expect_column_values_to_be_between(std)"),
        ("float16", _above_range, "expect_column_values_to_be_between(max)"),
        ("float16", _below_range, "expect_column_values_to_be_between(min)"),
    ],
    ids=["nan", "mostly-constant", "above-range", "below-range"],
)
def test_corrupted_slices_fail_the_gate(tmp_path, capsys, dtype, corrupt, expectation):
    slices = good_slices(dtype)
    offenders = sorted({slice_owner(i) for i in corrupt(slices)})
    report, error, stage = gate(tmp_path, write_windowed(tmp_path / "nsclc-lung", slices))
    assert error is not None and report["passed"] is False
    [failure] = hard_failures(report)
    assert failure["expectation"] == expectation and failure["suite"] == "slices"
    assert sorted(failure["unexpected_series"]) == offenders
    message = str(error)
    assert "\n" not in message and "cohort 'nsclc', window 'lung'" in message and "nsclc-lung.json" in message
    assert "quality.cohorts.nsclc" in message
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if expectation in ln and "[hard]" in ln]
    assert line.startswith("failed: quality nsclc-lung: [hard]") and all(key in line for key in offenders)
    run = mlflow_run(stage)
    assert run["status"] == "FAILED" and run["metrics.passed"] == 0.0 and run["metrics.n_hard_failed"] == 1.0


def test_failures_name_the_files_of_their_series(tmp_path, capsys):
    files = pd.DataFrame(
        {"path": [f"{key[:2]}/IM{k:03d}.dcm" for key in SERIES for k in range(SLICES_PER_SERIES)] + ["x.txt"],
         "series_key": [key for key in SERIES for _ in range(SLICES_PER_SERIES)] + [None]}
    )
    files.to_parquet(tmp_path / "files.parquet", index=False)
    slices = good_slices()
    bad = _mostly_constant(slices)
    root = write_windowed(tmp_path / "nsclc-lung", slices)
    report, error, _ = gate(tmp_path, root, files_path=tmp_path / "files.parquet")
    assert error is not None
    [failure] = hard_failures(report)
    owners = sorted({slice_owner(i) for i in bad})
    assert failure["series_files"] == {key: f"{key[:2]}/ (20 files)" for key in owners}
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("failed:")]
    assert all(f"{key} in {key[:2]}/ (20 files)" in line for key in owners)


def test_a_few_constant_slices_only_warn(tmp_path, capsys):
    slices = good_slices()
    slices[[0, 79]] = 255  # 2 of 80 constant: within not_constant_mostly = 0.9
    report, error, _ = gate(tmp_path, write_windowed(tmp_path / "nsclc-lung", slices))
    assert error is None and report["passed"] is True
    [failure] = report["failures"]
    assert failure["severity"] == "soft" and failure["expectation"] == "expect_column_values_to_be_between(std)"
    assert failure["unexpected_series"] == [SERIES[0], SERIES[3]]
    assert failure["observed"]["unexpected_count"] == 2
    assert SERIES[3] in capsys.readouterr().err


def test_slice_count_must_match_meta(tmp_path):
    root = write_windowed(tmp_path / "nsclc-lung", good_slices(), n_slices=81)
    report, error, _ = gate(tmp_path, root)
    assert error is not None
    [failure] = hard_failures(report)
    assert failure["expectation"] == "expect_table_row_count_to_equal" and failure["observed"] == 80
    assert failure["unexpected_series"] == []


def test_offending_series_are_capped_at_twenty(tmp_path, capsys):
    n_series, per_series = 30, 2
    keys = [f"k{i:03d}" for i in range(n_series)]
    root = write_windowed(tmp_path / "nsclc-lung", np.zeros((n_series * per_series, SIZE, SIZE), np.uint8))
    index = pd.read_parquet(root / "index.parquet")
    index["series_key"] = [keys[i // per_series] for i in range(len(index))]
    index.to_parquet(root / "index.parquet", index=False)
    report, error, _ = gate(tmp_path, root)
    [failure] = hard_failures(report)
    assert failure["unexpected_series"] == keys[:20]
    assert failure["observed"]["unexpected_count"] == n_series * per_series
    err = capsys.readouterr().err
    assert "k019, ..." in err and "k020" not in err


def test_full_params_file_is_accepted_and_shipped_block_builds(tmp_path, windowed):
    shipped = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    report, error, _ = gate(tmp_path, windowed, ProjectConfig.from_params(shipped))
    assert error is None and report["n_expectations"] == 6


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("spacing_xy_mm", [5.0, 0.2], "low <= high"),
        ("air_hu_min", -1000, r"\[low, high\]"),
        ("not_constant_mostly", 1.5, r"in \[0, 1\]"),
    ],
)
def test_bad_params_are_rejected_with_the_key_named(tmp_path, windowed, key, value, match):
    with pytest.raises(ValueError, match=match) as caught:
        gate(tmp_path, windowed, {**PARAMS, key: value})
    assert f"quality.{key}" in str(caught.value)


def test_importing_the_stages_does_not_import_great_expectations():
    """The GX adapter imports GX inside its functions: importing it, or a gate, costs nothing until a suite runs."""
    code = (
        "import sys, tasks.quality, tasks.screen, tasks.gx_expectations, flows.cli; "
        "print('great_expectations' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
