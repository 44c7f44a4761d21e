"""No name, ID, date, UID, institution or physician string leaves ingestion: not in any output byte
(parquet, json, NIfTI, compressed or not), not in logs, not on stderr (progress bar included)."""

from __future__ import annotations

import gzip
import logging
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cssl_core.ingest.keys import keyed_hash
from tests.cssl_core.ingest.conftest import SECRET, Ingested, run_ingest
from tests.cssl_core.ingest.corpus import pycerr_root, pydicom_file, read, save

MARKERS = {
    "PatientName": "Quorrax^Zelbinda",
    "PatientID": "PIDX-93817",
    "IssuerOfPatientID": "ISSUERX-55",
    "InstitutionName": "Instmarx General",
    "InstitutionAddress": "12 Markerstrasse",
    "ReferringPhysicianName": "Refmarx^Olaf",
    "PerformingPhysicianName": "Perfmarx^Ilse",
    "OperatorsName": "Opmarx^Kai",
    "AccessionNumber": "ACCX7731",
    "StudyID": "STUDYX42",
    "StudyDate": "19170423",
    "SeriesDate": "19170424",
    "AcquisitionDate": "19170425",
    "ContentDate": "19170426",
    "PatientBirthDate": "19020811",
}


def _plant(ds: Dataset, study: str, series: str, frame: str) -> Dataset:
    for keyword, value in MARKERS.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _uids(ds: Dataset) -> set[str]:
    found: set[str] = set()

    def visit(dataset: Dataset, elem) -> None:
        if elem.VR == "UI" and elem.value:
            values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
            found.update(str(v) for v in values if str(v))

    ds.walk(visit)
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.walk(visit)
    return found


@pytest.fixture(scope="module")
def marked_cohort(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("private") / "cohort"
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for path in sorted((pycerr_root() / "pat_1").glob("*.dcm")):  # 60 CT slices + the RTSTRUCT
        save(_plant(read(path), study, series, frame), root / "pat" / path.name)
    ct = save(_plant(read(pydicom_file("CT_small.dcm")), generate_uid(), generate_uid(), generate_uid()),
              root / "single" / "ct.dcm")  # fmt: skip
    save(_plant(read(pydicom_file("MR_small.dcm")), study, generate_uid(), frame), root / "single" / "mr.dcm")
    data = ct.read_bytes()
    (root / "single" / "cut.dcm").write_bytes(data[: len(data) // 2])
    ds = _plant(read(pydicom_file("CT_small.dcm")), study, generate_uid(), frame)
    del ds.ImageOrientationPatient
    save(ds, root / "single" / "no_orientation.dcm")
    # An invalid UID value makes pydicom warn *with the value* while reading: it must not surface.
    ds = _plant(read(pydicom_file("CT_small.dcm")), study, generate_uid(), frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.SeriesInstanceUID = "Quorrax-not-a-uid-" + MARKERS["PatientID"]
    save(ds, root / "single" / "bad_uid.dcm")
    shutil.copyfile(pydicom_file("rtplan.dcm"), root / "single" / "rtplan.dcm")
    uids: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in root.rglob("*.dcm"):
            if path.name != "cut.dcm":
                uids |= _uids(read(path))
    return root, uids


def _blobs(path: Path):
    data = path.read_bytes()
    yield data
    if path.name.endswith(".gz"):
        yield gzip.decompress(data)
    if path.suffix == ".parquet":
        yield pd.read_parquet(path).to_csv().encode()


@pytest.mark.parametrize("workers", [1, 2])
def test_no_identifier_in_outputs_logs_or_stderr(marked_cohort, tmp_path, capfd, caplog, workers):
    root, uids = marked_cohort
    needles = set(MARKERS.values()) | {"Quorrax", "Zelbinda", "PIDX", "Instmarx", "Refmarx"} | uids
    assert len(uids) > 60  # study, series, frame, every SOP instance, referenced UIDs of the RTSTRUCT ...
    raw = (root / "single" / "ct.dcm").read_bytes()
    assert all(m.encode() in raw for m in MARKERS.values())  # the scan looks for strings that are really there
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    summary = run_ingest(root, out, workers=workers, progress=True)
    assert Ingested(out, summary).accounts_for(root)
    assert summary.n_series == 3 and summary.n_slices == 62  # the invalid-UID file forms its own series
    captured = capfd.readouterr()
    texts = {"stderr": captured.err, "stdout": captured.out, "log": caplog.text}
    assert "ingest" in captured.err  # the progress bar did run
    leaks = [(name, n) for name, text in texts.items() for n in needles if n in text]
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        for blob in _blobs(path):
            leaks += [(str(path.relative_to(out)), n) for n in needles if n.encode() in blob]
    assert not leaks, sorted(set(leaks))


def test_keys_are_keyed_hashes(marked_cohort, tmp_path):
    root, _ = marked_cohort
    run_ingest(root, tmp_path / "a")
    run_ingest(root, tmp_path / "b", secret=b"another-site-secret")
    a = pd.read_parquet(tmp_path / "a" / "manifest.parquet")
    b = pd.read_parquet(tmp_path / "b" / "manifest.parquet")
    assert set(a["series_key"]).isdisjoint(b["series_key"])
    assert set(a["patient_key"]).isdisjoint(b["patient_key"])
    issuer, patient = MARKERS["IssuerOfPatientID"], MARKERS["PatientID"]
    assert keyed_hash(SECRET, "patient", f"id\x1f{issuer}\x1f{patient}") in set(a["patient_key"])
