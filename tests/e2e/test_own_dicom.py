"""The README's "Your own DICOM" steps, exactly as written, on a fresh clone with real scanner quirks.

A new user's first step after the demo: put a folder of their own CT under data/raw/<name>, `dvc add` it,
list it in params.yaml and run `dvc repro`. The folder here holds real chest CT (the NSCLC series shipped
in pycerr) with declared padding (Pixel Padding Value, and a Range Limit), undeclared -3024 HU padding, a
plain copy, a cropped "limb" scan without air, an MR image and a text file. The DAG must complete, every
file must be accounted for, padding must not reach the HU statistics, and the limb scan must be excluded
with its reason and its files, not block the cohort.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.cssl_core.ingest.corpus import build_padding_corpus, pydicom_file
from tests.helpers import REPO_ROOT, tiny_params
from tests.tiny_pipeline import run_in_project as run

pytestmark = pytest.mark.slow
COHORT = "mysite"


def fresh_clone(target: Path) -> Path:
    """`git clone` of this repository's committed state, with the small demo configuration (for speed only:
    the steps under test are the README's, not the configuration)."""
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
    (target / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return target


def own_dicom_folder(folder: Path) -> dict:
    corpus = build_padding_corpus(folder, n_slices=12)
    (folder / "other").mkdir()
    shutil.copy2(pydicom_file("MR_small.dcm"), folder / "other" / "mr.dcm")
    (folder / "other" / "notes.txt").write_text("scanner export notes\n")
    return corpus.series


@pytest.fixture(scope="module")
def site(tiny_pipeline, tmp_path_factory):
    root = fresh_clone(tmp_path_factory.mktemp("own") / "clone")
    # the demo cohorts' stages equal the session's tiny pipeline's: DVC restores them from its run-cache, and
    # runs the own cohort's stages (and everything that reads them) for real
    tiny_pipeline.share_cache(root)
    series = own_dicom_folder(root / "data" / "raw" / COHORT)

    # README: "track it with `dvc add data/raw/<name>`"
    added = run([sys.executable, "-m", "dvc", "add", f"data/raw/{COHORT}"], root)
    # README: "add <name> to ingest.cohorts (and an entry under quality.cohorts) in params.yaml"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"]["cohorts"].append(COHORT)
    params["quality"]["cohorts"][COHORT] = {}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # README: "and run `dvc repro`"
    repro = run([sys.executable, "-m", "dvc", "repro"], root)
    return {"root": root, "series": series, "added": added, "repro": repro}


def test_dvc_add_versions_the_cohort_in_git(site):
    root = site["root"]
    assert site["added"].returncode == 0, site["added"].stdout + site["added"].stderr
    assert (root / f"data/raw/{COHORT}.dvc").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", f"data/raw/{COHORT}.dvc"], cwd=root)
    assert ignored.returncode == 1, "the .dvc file must be committable"
    dicom = f"data/raw/{COHORT}/plain/slice_000.dcm"
    assert subprocess.run(["git", "check-ignore", "-q", dicom], cwd=root).returncode == 0, "DICOM stays out of git"
    status = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=root, capture_output=True, text=True).stdout
    assert f"data/raw/{COHORT}.dvc" in status and "slice_000.dcm" not in status


def test_the_dag_completes_and_every_file_is_accounted_for(site):
    root, repro = site["root"], site["repro"]
    assert repro.returncode == 0, repro.stdout[-4000:] + repro.stderr[-4000:]
    assert "Traceback" not in repro.stdout + repro.stderr
    files = pd.read_parquet(root / f"data/interim/{COHORT}/files.parquet")
    on_disk = sorted(str(p.relative_to(root / "data/raw" / COHORT)) for p in (root / "data/raw" / COHORT).rglob("*")
                     if p.is_file())
    assert sorted(files["path"]) == on_disk
    status = dict(zip(files["path"], files["reason"].astype(str), strict=True))
    assert status["other/mr.dcm"] == "not_ct" and status["other/notes.txt"] == "not_dicom"
    assert (root / "data/summary/metrics.json").is_file()


def test_padding_is_recognised_and_kept_out_of_hu_statistics(site):
    root, series = site["root"], site["series"]
    manifest = pd.read_parquet(root / f"data/interim/{COHORT}/manifest.parquet")
    files = pd.read_parquet(root / f"data/interim/{COHORT}/files.parquet")
    folder_of = {key: path.split("/")[0] for key, path in zip(files["series_key"], files["path"], strict=True)
                 if key is not None}
    by_folder = {folder_of[row.series_key]: row for row in manifest.itertuples()}
    assert set(by_folder) == {"declared", "declared_range", "undeclared", "plain", "limb"}
    expected_source = {"declared": "tag", "declared_range": "tag_range", "undeclared": "convention", "plain": "none",
                       "limb": "convention"}
    for folder, row in by_folder.items():
        assert row.padding_source == expected_source[folder], folder
        assert (row.hu_min, row.hu_max) == series[folder].tissue_hu_range, folder
        assert row.hu_min >= -1024, f"{folder}: padding leaked into hu_min"
    assert by_folder["plain"].padding_fraction == 0
    assert by_folder["declared"].padding_fraction == pytest.approx(series["declared"].padding_fraction)


def test_the_limb_scan_is_excluded_with_its_reason_and_files(site):
    root, repro = site["root"], site["repro"]
    report = json.loads((root / f"data/quality/{COHORT}.screen.json").read_text())
    assert report["passed"] is True and report["n_series"] == 5
    assert report["n_passed"] == 4 and report["n_excluded"] == 1
    (excluded,) = [s for s in report["series"] if s["outcome"] == "excluded"]
    assert excluded["files"] == sorted(f"limb/{p.name}" for p in site["series"]["limb"].files)
    reasons = " ".join(f["reason"] for f in excluded["failures"])
    assert "air" in reasons and str(site["series"]["limb"].tissue_hu_range[0]) in reasons
    assert "quality.cohorts.mysite.air_hu_min" in excluded["action"]
    screened = [line for line in repro.stderr.splitlines() if line.startswith(f"warning: screen {COHORT}")]
    excluded_lines = [line for line in screened if " excluded: " in line]
    assert len(excluded_lines) == 1 and "limb/ (20 files)" in excluded_lines[0]
    # the four short real series are kept, each with one soft warning line
    assert sum("(kept)" in line for line in screened) == 4
    # windowing only saw the four passed series
    for window in ("mediastinal", "lung"):
        index = pd.read_parquet(root / f"data/windowed/{COHORT}-{window}/index.parquet")
        assert index["series_key"].nunique() == 4
        assert excluded["series_key"] not in set(index["series_key"])
        slices = np.load(root / f"data/windowed/{COHORT}-{window}/slices.npy", mmap_mode="r")
        assert len(slices) == len(index) == 4 * 12
