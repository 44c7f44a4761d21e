"""Run-level errors (missing input, no DICOM, unsafe output) and the clean-output guarantee."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cssl_core.ingest.pipeline import IngestInputError, IngestOutputError
from tests.cssl_core.ingest.conftest import run_ingest
from tests.cssl_core.ingest.corpus import pydicom_file


def _one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert text and "\n" not in text
    return text


def test_missing_input_dir(tmp_path):
    with pytest.raises(IngestInputError) as excinfo:
        run_ingest(tmp_path / "nope", tmp_path / "out")
    assert "does not exist" in _one_line(excinfo)
    assert not (tmp_path / "out").exists()


def test_folder_without_dicom(tmp_path):
    cohort = tmp_path / "cohort"
    (cohort / "sub").mkdir(parents=True)
    (cohort / "sub" / "readme.txt").write_text("no images here\n")
    (cohort / "blob.bin").write_bytes(b"\x00\x01" * 300)
    (cohort / ".hidden").write_text("x")
    out = tmp_path / "out"
    (out / "volumes").mkdir(parents=True)
    (out / "summary.json").write_text("{}")  # a previous good output must survive a wrong input path
    with pytest.raises(IngestInputError) as excinfo:
        run_ingest(cohort, out)
    message = _one_line(excinfo)
    assert "no DICOM" in message and "2 not_dicom" in message
    assert (out / "summary.json").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "cohort").mkdir()
    with pytest.raises(IngestInputError) as excinfo:
        run_ingest(tmp_path / "cohort", tmp_path / "out")
    assert "no DICOM" in _one_line(excinfo)


def test_stale_outputs_are_removed(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    out = tmp_path / "out"
    run_ingest(cohort, out)
    (out / "volumes" / "s0000000000000000.nii.gz").write_bytes(b"stale")
    (out / "masks" / "old.nii.gz").write_bytes(b"stale")
    summary = run_ingest(cohort, out, compress=False)
    key = pd.read_parquet(out / "manifest.parquet")["series_key"].item()
    assert sorted(p.name for p in (out / "volumes").iterdir()) == [f"{key}.nii"]
    assert not any((out / "masks").iterdir())
    assert summary.n_series == 1


def test_refuses_to_clear_a_foreign_folder(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_thesis.docx").write_text("precious")
    with pytest.raises(IngestOutputError) as excinfo:
        run_ingest(cohort, out)
    assert "refusing" in _one_line(excinfo)
    assert (out / "my_thesis.docx").exists()


def test_output_inside_input_is_refused(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    with pytest.raises(IngestInputError):
        run_ingest(cohort, cohort / "out")
    with pytest.raises(IngestInputError):
        run_ingest(cohort, tmp_path)


def test_staging_left_by_a_killed_run_is_replaced(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    out = tmp_path / "out"
    run_ingest(cohort, out)
    staging = out / ".ingest-staging"
    (staging / "volumes").mkdir(parents=True)
    (staging / "volumes" / ".s1.nii.gz.0123456789ab.tmp.nii.gz").write_bytes(b"half a volume")
    run_ingest(cohort, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "files.parquet", "manifest.parquet", "masks", "slices.parquet", "summary.json", "volumes",
    ]  # fmt: skip


def test_a_run_failing_half_way_keeps_the_previous_output(tmp_path, monkeypatch):
    """Whatever stops a run (here an unexpected error in the table writer), the old output is untouched."""
    import cssl_core.ingest.pipeline as pipeline

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    out = tmp_path / "out"
    run_ingest(cohort, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the tables")

    monkeypatch.setattr(pipeline, "_write_tables", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_ingest(cohort, out, compress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_a_failed_first_run_leaves_no_output_folder(tmp_path, monkeypatch):
    import cssl_core.ingest.pipeline as pipeline

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), cohort / "ct.dcm")
    monkeypatch.setattr(pipeline, "_write_tables", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        run_ingest(cohort, tmp_path / "out")
    assert not (tmp_path / "out").exists()
