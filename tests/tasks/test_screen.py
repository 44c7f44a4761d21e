"""The series-level gate (stage screen@<cohort>): a bad series is excluded with its reason and files, not a blocker.

Most tests run the stage on manifests as ingestion writes them (docs/data-contracts.md), so each rule can be
broken on purpose; the last ones ingest real chest CT with one series cropped to the body interior and
window the cohort, end to end below DVC.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cssl_core import layout
from cssl_core.config import ProjectConfig
from cssl_core.config.quality import effective_params
from cssl_core.quality.report import QualityGateError
from tasks.screen import run_screen
from tests.helpers import tiny_params
from tests.tasks.quality_fixtures import quality_config, quality_params

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "screen-tests"
COHORT = "site_a"
PARAMS = quality_params(COHORT, html_report=False)
SERIES = [f"s{i}-{h}" for i, h in enumerate(("9f3c2a71", "04be8d55", "c1a7e302", "7d60f9b4"))]
PATIENTS = ["p-5e21", "p-5e21", "p-a093", "p-b7c4"]
N_SLICES = 20


def good_manifest() -> pd.DataFrame:
    """Four series as ingestion writes them, all within the shipped thresholds."""
    n = len(SERIES)
    return pd.DataFrame(
        {
            "series_key": SERIES,
            "patient_key": PATIENTS,
            "content_digest": [f"{i:032x}" for i in range(n)],
            "modality": ["CT"] * n,
            "n_slices": [N_SLICES] * n,
            "rows": [512] * n,
            "cols": [512] * n,
            "spacing_x": [0.977, 0.977, 0.703, 0.977],
            "spacing_y": [0.977, 0.977, 0.703, 0.977],
            "spacing_z": [3.0, 3.0, 1.25, 5.0],
            "slice_thickness": [3.0, 3.0, 1.25, 5.0],
            "hu_min": [-1000, -1024, -1000, -1000],
            "hu_max": [3065, 2254, 1561, 2056],
            "volume_path": [f"volumes/{k}.nii.gz" for k in SERIES],
            "mask_path": [None] * n,
            "n_files": [N_SLICES] * n,
            "is_multiframe": [False] * n,
            "transfer_syntaxes": ["ExplicitVRLittleEndian"] * n,
            "spacing_uneven": [False] * n,
            "has_gaps": [False] * n,
        }
    )


def files_table() -> pd.DataFrame:
    """files.parquet: series i's slices live in `patient<i>/CT<i>/`, plus a quarantined and an ignored file."""
    rows = [
        {"path": f"patient{i}/CT{i}/IM{k:04d}.dcm", "status": "ingested", "series_key": key, "reason": "ok",
         "message": ""}
        for i, key in enumerate(SERIES)
        for k in range(N_SLICES)
    ]
    rows.append({"path": "loose/broken.dcm", "status": "quarantined", "series_key": None, "reason": "unreadable",
                 "message": "could not be read"})
    rows.append({"path": "notes.txt", "status": "ignored", "series_key": None, "reason": "not_dicom", "message": ""})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def mlflow_store(monkeypatch, tracking_dir, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracking_dir}/mlflow.db")
    monkeypatch.setenv("CSSL_MLFLOW_EXPERIMENT", EXPERIMENT)
    monkeypatch.delenv("CSSL_MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)


def screen(tmp_path: Path, manifest: pd.DataFrame, params: dict | None = None, files: pd.DataFrame | None = None):
    """Run the stage; returns (report read back from disk, QualityGateError or None)."""
    interim = tmp_path / "interim" / COHORT
    interim.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(interim / "manifest.parquet", index=False)
    (files_table() if files is None else files).to_parquet(interim / "files.parquet", index=False)
    quality = tmp_path / "quality"
    error = None
    try:
        returned = run_screen(interim, quality, quality_config(params or PARAMS), COHORT)
    except QualityGateError as caught:
        error, returned = caught, caught.report
    report = json.loads(layout.screen_report(COHORT, quality).read_text())
    assert report == returned
    return report, error


def passed_list(tmp_path: Path) -> list[str] | None:
    path = layout.passed_list(COHORT, tmp_path / "quality")
    return json.loads(path.read_text())["series"] if path.exists() else None


def rejected(report: dict) -> list[dict]:
    return [entry for entry in report["series"] if entry["outcome"] != "passed"]


def test_good_cohort_passes_every_series(tmp_path, capsys):
    report, error = screen(tmp_path, good_manifest())
    assert error is None
    assert (report["passed"], report["n_series"], report["n_passed"], report["n_excluded"]) == (True, 4, 4, 0)
    assert report["required"] == 2 and report["n_expectations"] == 22 and report["n_hard_failed"] == 0
    assert [e["series_key"] for e in report["series"]] == SERIES
    assert all(e == {"series_key": k, "outcome": "passed"} for e, k in zip(report["series"], SERIES, strict=True))
    assert passed_list(tmp_path) == sorted(SERIES)
    assert capsys.readouterr().err == ""
    assert "seconds" not in json.dumps(report)


def test_series_without_air_is_excluded_with_reason_files_and_action(tmp_path, capsys):
    manifest = good_manifest()
    manifest.loc[2, "hu_min"] = -196  # a limb or cropped scan: no air anywhere in the volume
    report, error = screen(tmp_path, manifest)
    assert error is None, "one bad series must not stop the cohort"
    assert (report["passed"], report["n_passed"], report["n_excluded"]) == (True, 3, 1)
    [entry] = rejected(report)
    assert entry["series_key"] == SERIES[2] and entry["outcome"] == "excluded"
    [failure] = entry["failures"]
    assert failure["expectation"] == "expect_column_values_to_be_between(hu_min)"
    assert failure["param"] == "air_hu_min" and failure["observed"] == {"hu_min": -196}
    assert failure["reason"].startswith("hu_min -196 HU: no air in the volume") and "cropped" in failure["reason"]
    assert entry["files"] == [f"patient2/CT2/IM{k:04d}.dcm" for k in range(N_SLICES)] and entry["n_files"] == 20
    assert "quality.cohorts.site_a.air_hu_min" in entry["action"] and "data/raw/site_a" in entry["action"]
    assert passed_list(tmp_path) == sorted(SERIES[:2] + SERIES[3:])
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: screen site_a: series {SERIES[2]} excluded: hu_min -196 HU")
    assert "files: patient2/CT2/ (20 files)" in line and "quality.cohorts.site_a.air_hu_min" in line


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], list[str]]:
    def corrupt(frame: pd.DataFrame) -> list[str]:
        if value is None:
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return [SERIES[row]]

    return corrupt


def _duplicate_series(frame: pd.DataFrame) -> list[str]:
    frame.loc[3, "series_key"] = SERIES[1]
    return [SERIES[1], SERIES[1]]


def _blank_volume(frame: pd.DataFrame) -> list[str]:
    frame.loc[1, ["hu_min", "hu_max"]] = -1024
    return [SERIES[1]]


@pytest.mark.parametrize(
    ("corrupt", "expectation", "words"),
    [
        (_set("modality", 1, "MR"), "expect_column_values_to_be_in_set(modality)", "modality MR: not one of CT"),
        (_set("spacing_x", 2, 0.0), "expect_column_values_to_be_between(spacing_x)", "spacing_x 0 mm outside"),
        (_set("spacing_z", 3, 50.0), "expect_column_values_to_be_between(spacing_z)", "spacing_z 50 mm outside"),
        (_set("n_slices", 1, 5000), "expect_column_values_to_be_between(n_slices)", "n_slices 5000 slices outside"),
        (_set("hu_min", 2, -3000), "expect_column_values_to_be_between(hu_min)", "hu_min -3000 HU: below -1200"),
        (_duplicate_series, "expect_column_values_to_be_unique(series_key)", "appears more than once"),
        (_set("patient_key", 3, None), "expect_column_values_to_not_be_null(patient_key)", "patient_key is missing"),
        (_blank_volume, "expect_column_pair_values_a_to_be_greater_than_b(hu_max, hu_min)", "a blank volume"),
    ],
    ids=["modality", "spacing-x", "spacing-z", "n-slices", "padding", "dup-key", "null-patient", "blank"],
)
def test_each_hard_rule_excludes_only_the_offending_series(tmp_path, capsys, corrupt, expectation, words):
    manifest = good_manifest()
    offenders = corrupt(manifest)
    report, error = screen(tmp_path, manifest)
    assert error is None and report["passed"] is True
    entries = rejected(report)
    assert [e["series_key"] for e in entries] == offenders
    for entry in entries:
        [failure] = [f for f in entry["failures"] if f["severity"] == "hard"]
        assert failure["expectation"] == expectation and words in failure["reason"]
        assert entry["n_files"] == N_SLICES
    assert sorted(passed_list(tmp_path)) == sorted(set(manifest["series_key"]) - set(offenders))
    assert len(capsys.readouterr().err.splitlines()) == len(offenders)


def test_series_without_a_key_is_excluded_and_named_as_such(tmp_path, capsys):
    manifest = good_manifest()
    manifest["series_key"] = manifest["series_key"].astype(object)
    manifest.loc[0, "series_key"] = None
    report, error = screen(tmp_path, manifest)
    assert error is None
    [entry] = rejected(report)
    assert entry["series_key"] is None and entry["files"] == []
    assert "series_key is missing" in entry["failures"][0]["reason"]
    assert passed_list(tmp_path) == sorted(SERIES[1:])
    [line] = capsys.readouterr().err.splitlines()
    assert "series <no series_key> excluded" in line and "no files recorded" in line


def test_soft_rules_warn_and_keep_the_series(tmp_path, capsys):
    manifest = good_manifest()
    manifest.loc[0, "n_slices"] = 10
    manifest.loc[3, "hu_max"] = 50
    report, error = screen(tmp_path, manifest)
    assert error is None and report["n_passed"] == 4 and report["n_soft_failed"] == 2
    kept = {e["series_key"]: e for e in report["series"] if e.get("failures")}
    assert kept[SERIES[0]]["failures"][0]["reason"].startswith("only 10 slices")
    assert kept[SERIES[3]]["failures"][0]["reason"].startswith("hu_max 50 HU: below 100 HU")
    assert all(e["outcome"] == "passed" and "files" not in e for e in kept.values())
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("(kept)" in line for line in err)


def test_a_series_with_a_missing_slice_is_kept_with_a_warning(tmp_path, capsys):
    """has_gaps / spacing_uneven in the manifest passed the screen without a word (second new-user trial, 6)."""
    manifest = good_manifest()
    manifest.loc[1, ["has_gaps", "spacing_uneven"]] = True
    report, error = screen(tmp_path, manifest)
    assert error is None and report["n_passed"] == 4 and report["n_soft_failed"] == 2
    [entry] = [e for e in report["series"] if e.get("failures")]
    reasons = sorted(f["reason"] for f in entry["failures"])
    assert entry["series_key"] == SERIES[1] and entry["outcome"] == "passed"
    assert reasons[0].startswith("a slice is missing") and reasons[1].startswith("uneven slice spacing")
    err = capsys.readouterr().err
    assert SERIES[1] in err and "a slice is missing" in err and "(kept)" in err


def test_stop_mode_stops_the_cohort_with_one_line(tmp_path, capsys):
    manifest = good_manifest()
    manifest.loc[2, "hu_min"] = -196
    report, error = screen(tmp_path, manifest, {**PARAMS, "on_fail": "stop"})
    assert error is not None and report["passed"] is False
    message = str(error)
    assert "\n" not in message and "cohort 'site_a'" in message and "on_fail: stop" in message
    assert "1 of 4 series" in message and "site_a.screen.json" in message and "on_fail: exclude" in message
    [entry] = rejected(report)
    assert entry["outcome"] == "failed" and entry["files"][0] == "patient2/CT2/IM0000.dcm"
    assert passed_list(tmp_path) is None, "a stopped cohort must leave no passed list to window"
    assert SERIES[2] in capsys.readouterr().err


def test_too_few_passing_series_stop_the_cohort(tmp_path):
    manifest = good_manifest()
    manifest.loc[[0, 1, 2], "hu_min"] = -150
    report, error = screen(tmp_path, manifest)  # min_series 0.5 of 4 = 2; one passes
    assert error is not None and report["passed"] is False
    assert (report["n_passed"], report["n_excluded"], report["required"]) == (1, 3, 2)
    message = str(error)
    assert "\n" not in message and "1 of 4 series passed" in message and "the 2 that min_series 0.5" in message
    assert "quality.cohorts.site_a" in message and "site_a.screen.json" in message
    assert passed_list(tmp_path) is None


def test_min_series_as_a_count(tmp_path):
    manifest = good_manifest()
    manifest.loc[0, "hu_min"] = -150
    report, error = screen(tmp_path / "three", manifest, {**PARAMS, "min_series": 3})
    assert error is None and report["required"] == 3 and report["n_passed"] == 3
    report, error = screen(tmp_path / "four", manifest, {**PARAMS, "cohorts": {COHORT: {"min_series": 4}}})
    assert error is not None and report["required"] == 4 and "the 4 that min_series 4" in str(error)


def test_per_cohort_override_loosens_only_that_cohort(tmp_path):
    manifest = good_manifest()
    manifest.loc[2, "hu_min"] = -196
    loose = {**PARAMS, "cohorts": {COHORT: {"air_hu_min": [-1200, -100]}, "other": {"air_hu_min": [-1, 0]}}}
    report, error = screen(tmp_path, manifest, loose)
    assert error is None and report["n_passed"] == 4
    assert effective_params(loose, "other")["air_hu_min"] == [-1, 0]
    assert effective_params(loose, COHORT)["spacing_z_mm"] == [0.3, 10.0]  # everything else: the defaults


def test_null_override_means_the_defaults():
    assert effective_params({**PARAMS, "cohorts": {COHORT: None}}, COHORT) == effective_params(PARAMS, COHORT)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({**PARAMS, "cohorts": {COHORT: {"air_hu": [-1, 0]}}}, r"quality\.cohorts\.site_a\.air_hu is not a quality"),
        ({**PARAMS, "cohorts": {COHORT: {"air_hu_min": [0, -1]}}}, r"quality\.cohorts\.site_a\.air_hu_min must be"),
        ({**PARAMS, "cohorts": {COHORT: {"on_fail": "skip"}}}, r"quality\.cohorts\.site_a\.on_fail must be one of"),
        ({**PARAMS, "cohorts": {COHORT: [1]}}, r"quality\.cohorts\.site_a must be a mapping"),
        ({**PARAMS, "min_series": 0}, r"quality\.min_series must be a count"),
        ({**PARAMS, "min_series": 1.5}, r"quality\.min_series must be a count"),
        ({**PARAMS, "min_series": True}, r"quality\.min_series must be a count"),
        ({**PARAMS, "bogus": 1}, r"quality\.bogus is not a quality setting"),
    ],
    ids=["unknown-key", "reversed-range", "on-fail", "not-mapping", "zero", "fraction-above-1", "bool", "top-level"],
)
def test_bad_settings_are_one_line_naming_the_key(tmp_path, params, match):
    with pytest.raises(ValueError, match=match) as caught:
        screen(tmp_path, good_manifest(), params)
    assert "\n" not in str(caught.value)


def test_missing_cohort_entry_says_what_to_add():
    with pytest.raises(KeyError) as caught:
        effective_params({**PARAMS, "cohorts": {"other": {}}}, COHORT)
    message = caught.value.args[0]
    assert "quality.cohorts.site_a" in message and "`site_a: {}`" in message


def test_empty_manifest_fails_the_cohort(tmp_path):
    report, error = screen(tmp_path, good_manifest().iloc[0:0])
    assert error is not None and report["n_series"] == 0
    assert "at least one series ingested" in str(error) and "\n" not in str(error)


def test_shipped_params_have_an_entry_per_cohort():
    shipped = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for cohort in shipped["ingest"]["cohorts"]:
        assert effective_params(shipped, cohort)["on_fail"] in ("stop", "exclude")


# --- real DICOM: ingest, screen and window a cohort with one cropped series ------------------------------


@pytest.fixture(scope="module")
def cropped_cohort(tmp_path_factory):
    from tests.cssl_core.ingest.conftest import run_ingest
    from tests.tasks.cropped_series import write_cohort

    root = tmp_path_factory.mktemp("cropped")
    info = write_cohort(root / "raw" / COHORT)
    run_ingest(root / "raw" / COHORT, root / "interim" / COHORT, workers=1)
    return root, info


def test_real_cropped_series_is_excluded_and_not_windowed(cropped_cohort, tmp_path, capsys):
    from tasks.window import run_window

    root, info = cropped_cohort
    interim = root / "interim" / COHORT
    quality = tmp_path / "quality"
    report = run_screen(interim, quality, quality_config(PARAMS), COHORT, raw_dir=f"data/raw/{COHORT}")
    assert (report["n_series"], report["n_passed"], report["n_excluded"]) == (3, 2, 1)
    [entry] = rejected(report)
    assert entry["files"] == info["files"]  # relative to the cohort folder, every file of the crop
    [failure] = entry["failures"]
    assert failure["observed"] == {"hu_min": info["hu_min"]} and info["hu_min"] > -300
    assert failure["reason"].startswith(f"hu_min {info['hu_min']:g} HU: no air in the volume")
    [line] = capsys.readouterr().err.splitlines()
    assert f"files: cropped/ ({len(info['files'])} files)" in line

    config = ProjectConfig.from_params(tiny_params())  # the shipped window presets, at 32 px
    assert config.window.size == 32
    out = tmp_path / "windowed" / f"{COHORT}-lung"
    meta = run_window(interim, out, COHORT, "lung", config, passed_path=layout.passed_list(COHORT, quality))
    index = pd.read_parquet(out / "index.parquet")
    windowed = set(index["series_key"])
    assert windowed == set(passed_list(tmp_path)) and entry["series_key"] not in windowed
    assert (meta["n_series"], meta["n_series_excluded"]) == (2, 1)
    manifest = pd.read_parquet(interim / "manifest.parquet").set_index("series_key")
    assert meta["n_slices"] == len(index) == int(manifest.loc[sorted(passed_list(tmp_path)), "n_slices"].sum())
    assert not out.with_name(out.name + ".partial").exists()


def test_window_refuses_a_list_from_another_cohort_or_missing(cropped_cohort, tmp_path):
    from tasks.window import read_passed

    with pytest.raises(FileNotFoundError, match="cssl screen --cohort site_a"):
        read_passed(tmp_path / "nowhere.json", COHORT)
    other = tmp_path / "other.passed.json"
    other.write_text(json.dumps({"cohort": "other", "series": []}))
    with pytest.raises(ValueError, match="not the passed-series list of cohort 'site_a'"):
        read_passed(other, COHORT)
