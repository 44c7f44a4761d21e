"""The quality gate end to end on realistic inputs: good data passes, each corruption fails by name.

Great Expectations takes seconds to import and an MLflow SQLite store seconds to create, so the store
and the good windowed directory are module-scoped; each run_quality call then costs a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tasks.quality import QualityGateError, run_quality

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "quality-tests"
PARAMS = {
    "modalities": ["CT"],
    "spacing_xy_mm": [0.2, 5.0],
    "spacing_z_mm": [0.3, 10.0],
    "n_slices": [1, 3000],
    "air_hu_min": [-1200, -900],
    "plausible_hu_max": [100, 4000],
    "min_slices_soft": 16,
    "not_constant_mostly": 0.9,
    "html_report": True,
}
N_SERIES, SLICES_PER_SERIES, SIZE = 4, 20, 24
SERIES = [f"s{i}-{h}" for i, h in enumerate(("9f3c2a71", "04be8d55", "c1a7e302", "7d60f9b4"))]
PATIENTS = ["p-5e21", "p-5e21", "p-a093", "p-b7c4"]


def good_manifest() -> pd.DataFrame:
    """Four series as ingestion writes them (docs/data-contracts.md), all within the shipped thresholds."""
    return pd.DataFrame(
        {
            "series_key": SERIES,
            "patient_key": PATIENTS,
            "modality": ["CT"] * N_SERIES,
            "n_slices": [SLICES_PER_SERIES] * N_SERIES,
            "rows": [512] * N_SERIES,
            "cols": [512] * N_SERIES,
            "spacing_x": [0.977, 0.977, 0.703, 0.977],
            "spacing_y": [0.977, 0.977, 0.703, 0.977],
            "spacing_z": [3.0, 3.0, 1.25, 5.0],
            "slice_thickness": [3.0, 3.0, 1.25, 5.0],
            "hu_min": [-1000, -1024, -1000, -1000],
            "hu_max": [3065, 2254, 1561, 2056],
            "volume_path": [f"volumes/{k}.nii.gz" for k in SERIES],
            "mask_path": [f"masks/{SERIES[0]}.nii.gz", None, None, None],
            "n_files": [SLICES_PER_SERIES] * N_SERIES,
            "is_multiframe": [False] * N_SERIES,
            "transfer_syntaxes": ["ExplicitVRLittleEndian"] * N_SERIES,
            "spacing_uneven": [False] * N_SERIES,
            "has_gaps": [False] * N_SERIES,
        }
    )


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


def gate(tmp_path: Path, manifest: pd.DataFrame, windowed_dir: Path, params: dict | None = None):
    """Run the stage; returns (report read back from disk, QualityGateError or None, stage name)."""
    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)
    output = tmp_path / "quality" / "nsclc-lung.json"
    stage = f"quality@{tmp_path.name}"  # unique per test, so the MLflow run can be found by name
    error = None
    try:
        returned = run_quality(manifest_path, windowed_dir, output, params or PARAMS, stage_name=stage)
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
    report, error, stage = gate(tmp_path, good_manifest(), windowed)
    assert error is None
    assert report["passed"] is True and report["n_hard_failed"] == 0 and report["n_soft_failed"] == 0
    assert report["failures"] == []
    assert report["n_passed"] == report["n_expectations"] == 19 + 6
    assert report["suites"]["slices"]["n_rows"] == N_SERIES * SLICES_PER_SERIES
    assert (report["cohort"], report["window"]) == ("nsclc", "lung")
    assert "warning" not in capsys.readouterr().err
    run = mlflow_run(stage)
    assert run["status"] == "FINISHED"
    assert run["metrics.passed"] == 1.0 and run["metrics.n_hard_failed"] == 0.0
    assert run["metrics.n_expectations"] == 25.0 and run["metrics.n_passed"] == 25.0
    assert run["params.spacing_xy_mm"] == "[0.2, 5.0]"


def test_html_pages_are_written_next_to_the_report_unless_disabled(tmp_path, windowed):
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir(), off.mkdir()
    manifest = good_manifest()
    manifest.loc[0, "modality"] = "PT"
    gate(on, manifest, windowed)
    pages = sorted(p.name for p in (on / "quality").glob("*.html"))
    assert pages == ["nsclc-lung.manifest.html", "nsclc-lung.slices.html"]
    text = (on / "quality" / pages[0]).read_text()
    assert "Expectation Validation Result" in text and "must belong to this set" in text and "PT" in text
    gate(off, good_manifest(), windowed, {**PARAMS, "html_report": False})
    assert list((off / "quality").glob("*.html")) == []


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], str]:
    def corrupt(frame: pd.DataFrame) -> str:
        if value is None:
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return SERIES[row]

    return corrupt


def _duplicate_series(frame: pd.DataFrame) -> str:
    frame.loc[3, "series_key"] = SERIES[1]
    return SERIES[1]


@pytest.mark.parametrize(
    ("corrupt", "expectation"),
    [
        (_set("modality", 1, "MR"), "expect_column_values_to_be_in_set(modality)"),
        (_set("spacing_x", 2, 0.0), "expect_column_values_to_be_between(spacing_x)"),
        (_set("spacing_y", 0, 50.0), "expect_column_values_to_be_between(spacing_y)"),
        (_set("spacing_z", 3, 50.0), "expect_column_values_to_be_between(spacing_z)"),
        (_set("n_slices", 1, 5000), "expect_column_values_to_be_between(n_slices)"),
        (_duplicate_series, "expect_column_values_to_be_unique(series_key)"),
        (_set("hu_min", 2, -200), "expect_column_values_to_be_between(hu_min)"),
        (_set("patient_key", 3, None), "expect_column_values_to_not_be_null(patient_key)"),
        (_set("spacing_z", 0, None), "expect_column_values_to_not_be_null(spacing_z)"),
    ],
    ids=[
        "modality-MR",
        "spacing-0",
        "spacing-y-50",
        "spacing-z-50",
        "n_slices",
        "dup-key",
        "no-air",
        "null-pat",
        "null-spacing",
    ],
)
def test_corrupted_manifest_fails_the_gate_naming_rule_and_series(tmp_path, windowed, corrupt, expectation):
    manifest = good_manifest()
    offender = corrupt(manifest)
    report, error, stage = gate(tmp_path, manifest, windowed)
    assert error is not None, "a hard failure must raise QualityGateError"
    assert report["passed"] is False and report["n_hard_failed"] == 1
    [failure] = hard_failures(report)
    assert failure["expectation"] == expectation and failure["suite"] == "manifest"
    assert failure["unexpected_series"] == [offender]
    message = str(error)
    assert "cohort 'nsclc', window 'lung'" in message
    [line] = [line for line in message.splitlines() if expectation in line]
    assert offender in line and "[hard]" in line
    assert not any(other in message for other in SERIES if other != offender)
    run = mlflow_run(stage)
    assert run["status"] == "FAILED" and run["metrics.passed"] == 0.0 and run["metrics.n_hard_failed"] == 1.0


def test_low_hu_max_is_only_a_soft_failure(tmp_path, windowed, capsys):
    manifest = good_manifest()
    manifest.loc[2, "hu_max"] = 50
    report, error, stage = gate(tmp_path, manifest, windowed)
    assert error is None
    assert report["passed"] is True and report["n_hard_failed"] == 0 and report["n_soft_failed"] == 1
    [failure] = report["failures"]
    assert failure["severity"] == "soft"
    assert failure["expectation"] == "expect_column_values_to_be_between(hu_max)"
    assert failure["unexpected_series"] == [SERIES[2]] and failure["observed"]["values"] == [50]
    warning = capsys.readouterr().err
    assert "warning: quality nsclc-lung:" in warning and SERIES[2] in warning and "hu_max" in warning
    run = mlflow_run(stage)
    assert run["status"] == "FINISHED" and run["metrics.passed"] == 1.0 and run["metrics.n_soft_failed"] == 1.0


def test_short_series_is_only_a_soft_failure(tmp_path, windowed):
    manifest = good_manifest()
    manifest.loc[0, "n_slices"] = 10
    report, error, _ = gate(tmp_path, manifest, windowed)
    assert error is None and report["passed"] is True
    [failure] = report["failures"]
    assert (failure["severity"], failure["expectation"]) == ("soft", "expect_column_values_to_be_between(n_slices)")


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
def test_corrupted_slices_fail_the_gate(tmp_path, dtype, corrupt, expectation):
    slices = good_slices(dtype)
    offenders = sorted({slice_owner(i) for i in corrupt(slices)})
    report, error, _ = gate(tmp_path, good_manifest(), write_windowed(tmp_path / "nsclc-lung", slices))
    assert error is not None and report["passed"] is False
    [failure] = hard_failures(report)
    assert failure["expectation"] == expectation and failure["suite"] == "slices"
    assert sorted(failure["unexpected_series"]) == offenders
    [line] = [line for line in str(error).splitlines() if expectation in line]
    assert all(key in line for key in offenders)


def test_a_few_constant_slices_only_warn(tmp_path, capsys):
    slices = good_slices()
    slices[[0, 79]] = 255  # 2 of 80 constant: within not_constant_mostly = 0.9
    report, error, _ = gate(tmp_path, good_manifest(), write_windowed(tmp_path / "nsclc-lung", slices))
    assert error is None and report["passed"] is True
    [failure] = report["failures"]
    assert failure["severity"] == "soft" and failure["expectation"] == "expect_column_values_to_be_between(std)"
    assert failure["unexpected_series"] == [SERIES[0], SERIES[3]]
    assert failure["observed"]["unexpected_count"] == 2
    assert SERIES[3] in capsys.readouterr().err


def test_slice_count_must_match_meta(tmp_path):
    root = write_windowed(tmp_path / "nsclc-lung", good_slices(), n_slices=81)
    report, error, _ = gate(tmp_path, good_manifest(), root)
    assert error is not None
    [failure] = hard_failures(report)
    assert failure["expectation"] == "expect_table_row_count_to_equal" and failure["observed"] == 80
    assert failure["unexpected_series"] == []


def test_offending_series_are_capped_at_twenty(tmp_path, windowed):
    keys = [f"k{i:03d}" for i in range(30)]
    manifest = pd.concat([good_manifest()] * 8, ignore_index=True).iloc[:30].copy()
    manifest["series_key"] = keys
    manifest["modality"] = "MR"
    report, error, _ = gate(tmp_path, manifest, windowed)
    [failure] = hard_failures(report)
    assert failure["unexpected_series"] == keys[:20]
    assert failure["observed"]["unexpected_count"] == 30
    assert "k019, ..." in str(error) and "k020" not in str(error)


def test_missing_column_fails_instead_of_passing_silently(tmp_path, windowed):
    report, error, _ = gate(tmp_path, good_manifest().drop(columns=["hu_min"]), windowed)
    assert error is not None
    failed = {f["expectation"] for f in hard_failures(report)}
    assert failed == {"expect_column_values_to_not_be_null(hu_min)", "expect_column_values_to_be_between(hu_min)"}


def test_full_params_file_is_accepted_and_shipped_block_builds(tmp_path, windowed):
    shipped = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    report, error, _ = gate(tmp_path, good_manifest(), windowed, shipped)
    assert error is None and report["n_expectations"] == 25


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
        gate(tmp_path, good_manifest(), windowed, {**PARAMS, key: value})
    assert f"quality.{key}" in str(caught.value)


def test_importing_the_stage_does_not_import_great_expectations():
    code = "import sys, tasks.quality, tasks.expectations; print('great_expectations' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
