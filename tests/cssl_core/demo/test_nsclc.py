"""The real NSCLC cohort: copied byte for byte, GTV labels and masks that agree, no PHI in the summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from cssl_core.demo import nsclc
from cssl_core.demo.nsclc import LICENSE_FILE, PATIENTS, copy_nsclc_cohort, nsclc_source_dir


@pytest.fixture(scope="module")
def source() -> Path:
    # scripts/setup.sh installs pycerr; a missing copy is a set-up failure, not a reason to skip
    return nsclc_source_dir()


@pytest.fixture(scope="module")
def copied(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("nsclc")
    return out, copy_nsclc_cohort(out)


def test_every_file_of_the_four_patients_is_copied_byte_for_byte(source, copied):
    out, summary = copied
    assert sorted(p.name for p in out.iterdir() if p.name != "annotations") == list(PATIENTS)
    total = 0
    for patient in PATIENTS:
        originals = sorted(p for p in (source / patient).iterdir() if p.is_file())
        copies = sorted(p for p in (out / patient).iterdir() if p.is_file())
        assert [p.name for p in copies] == [p.name for p in originals]
        for original, copy in zip(originals, copies, strict=True):
            assert copy.read_bytes() == original.read_bytes()
        total += len(originals)
    assert summary["dicom_files"] == total
    assert (out / LICENSE_FILE).read_bytes() == (source / "README_LICENSE.txt").read_bytes()
    assert "Lambin" in (out / LICENSE_FILE).read_text()


def test_every_patient_has_tumour_slices_and_masks_agree_with_labels(copied):
    out, summary = copied
    table = pd.read_parquet(out / "annotations" / "slices.parquet")
    assert list(table.columns) == ["file", "has_tumor", "mask_file", "mask_index"]
    assert table.has_tumor.dtype == bool
    for patient in PATIENTS:
        rows = table[table.file.str.startswith(f"{patient}/")]
        ct_files = [p for p in sorted((out / patient).iterdir()) if "RTSTRUCT" not in _modality(p)]
        assert len(rows) == len(ct_files)
        assert rows.mask_file.nunique() == 1
        mask = np.load(out / rows.mask_file.iloc[0])
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 4}
        assert sorted(rows.mask_index) == list(range(len(mask)))
        positive = rows.has_tumor.sum()
        assert 0 < positive < len(rows), patient
        assert summary["tumor_slices_per_patient"][patient] == positive
        for row in rows.itertuples():
            ds = pydicom.dcmread(out / row.file, stop_before_pixels=True)
            assert mask[row.mask_index].shape == (ds.Rows, ds.Columns)
            assert bool(mask[row.mask_index].any()) == row.has_tumor
        # a GTV is one lump: its slices are neighbours along z
        z = sorted(_z(out / f) for f in rows.file[rows.has_tumor])
        all_z = sorted(_z(out / f) for f in rows.file)
        assert all_z.index(z[-1]) - all_z.index(z[0]) + 1 == len(z)
    assert summary["slices_has_tumor"] == int(table.has_tumor.sum())


def test_summary_names_no_patient(source, copied):
    _, summary = copied
    text = repr(summary)
    for patient in PATIENTS:
        for path in sorted((source / patient).iterdir())[:2]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                value = str(ds.get(keyword, "") or "")
                if len(value) > 2:
                    assert value not in text, keyword


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps pycerr==2\.5\.1"):
        nsclc.nsclc_source_dir()


def _z(path: Path) -> float:
    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


def _modality(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).Modality)
