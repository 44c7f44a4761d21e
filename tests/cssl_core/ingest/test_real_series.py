"""The four real NSCLC chest CT series shipped with pycerr, against SimpleITK and against pydicom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.cssl_core.ingest.corpus import PYCERR_PATIENTS, pycerr_root, read

NIFTI_TOL = 1e-5  # NIfTI stores spacing/origin/direction as float32


def _reference(patient: str) -> sitk.Image:
    folder = str(pycerr_root() / patient)
    (series_id,) = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series_id))
    return reader.Execute()


def _first_ct(patient: str) -> str:
    return f"{patient}/DCM_IMG_00000.dcm"


def test_every_file_accounted(pycerr_ingested):
    assert pycerr_ingested.accounts_for(pycerr_root())
    assert pycerr_ingested.summary.n_series == 4


def test_rtstruct_quarantined_as_not_image(pycerr_ingested):
    files = pycerr_ingested.files
    rtstruct = files[files["path"].str.contains("DCM_RS_")]
    assert len(rtstruct) == 4
    assert set(rtstruct["status"]) == {"quarantined"}
    assert set(rtstruct["reason"]) == {"not_image"}
    assert set(files[files["path"].str.contains("DCM_IMG_")]["reason"]) == {"ok"}


@pytest.mark.parametrize("patient", PYCERR_PATIENTS)
def test_volume_equals_simpleitk_series_reader(pycerr_ingested, patient):
    reference = _reference(patient)
    ours = pycerr_ingested.image_of(_first_ct(patient))
    assert ours.GetPixelIDValue() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(ours.GetSpacing(), reference.GetSpacing(), atol=NIFTI_TOL)
    np.testing.assert_allclose(ours.GetOrigin(), reference.GetOrigin(), atol=NIFTI_TOL)
    np.testing.assert_allclose(ours.GetDirection(), reference.GetDirection(), atol=NIFTI_TOL)
    row = pycerr_ingested.series_of(_first_ct(patient))
    # The manifest keeps full precision: same (last - first) / (n - 1) rule as ITK.
    assert row["spacing_z"] == pytest.approx(reference.GetSpacing()[2], rel=1e-9)
    assert (row["spacing_x"], row["spacing_y"]) == pytest.approx(reference.GetSpacing()[:2], rel=1e-12)
    assert row["n_slices"] == reference.GetSize()[2]
    assert (row["cols"], row["rows"]) == reference.GetSize()[:2]


@pytest.mark.parametrize("patient", PYCERR_PATIENTS)
def test_volume_equals_direct_pydicom_computation(pycerr_ingested, patient):
    slices = []
    for path in sorted((pycerr_root() / patient).glob("DCM_IMG_*.dcm")):
        ds = read(path)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        z = float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal))
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((z, hu))
    slices.sort(key=lambda s: s[0])
    expected = np.stack([hu for _, hu in slices]).astype(np.int16)
    ours = sitk.GetArrayFromImage(pycerr_ingested.image_of(_first_ct(patient)))
    np.testing.assert_array_equal(ours, expected)
    row = pycerr_ingested.series_of(_first_ct(patient))
    assert (row["hu_min"], row["hu_max"]) == (expected.min(), expected.max())
    key = row.name
    table = pycerr_ingested.slices[pycerr_ingested.slices["series_key"] == key]
    assert list(table["slice_index"]) == list(range(len(slices)))
    np.testing.assert_allclose(table["z_mm"], [z - slices[0][0] for z, _ in slices], atol=1e-9)


def test_manifest_columns_follow_contract(pycerr_ingested):
    assert list(pycerr_ingested.manifest.columns) == [
        "series_key", "patient_key", "content_digest", "modality", "n_slices", "rows", "cols", "spacing_x",
        "spacing_y",
        "spacing_z", "slice_thickness", "hu_min", "hu_max", "padding_source", "padding_hu_min", "padding_hu_max",
        "padding_fraction", "volume_path", "mask_path", "n_files",
        "is_multiframe", "transfer_syntaxes", "spacing_uneven", "has_gaps",
    ]  # fmt: skip
    assert list(pycerr_ingested.files.columns) == ["path", "status", "series_key", "reason", "message"]
    assert list(pycerr_ingested.slices.columns) == ["series_key", "patient_key", "slice_index", "z_mm", "has_mask"]
    manifest = pycerr_ingested.manifest
    assert manifest["volume_path"].str.fullmatch(r"volumes/s[0-9a-f]{16}\.nii\.gz").all()
    assert manifest["mask_path"].isna().all()
    assert set(manifest["transfer_syntaxes"]) == {"Implicit VR Little Endian"}
    assert not manifest["spacing_uneven"].any() and not manifest["has_gaps"].any()
    assert manifest["patient_key"].nunique() == 4
    # these series are cropped to the body and clipped at -1000 HU: no padding, declared or not
    assert set(manifest["padding_source"]) == {"none"} and (manifest["padding_fraction"] == 0).all()
    assert manifest["padding_hu_min"].isna().all() and manifest["padding_hu_max"].isna().all()


# Content digests of the four series as ingested before padding handling existed: series without padding
# must come out voxel for voxel as before (the digest covers every voxel and the shape).
DIGESTS_BEFORE_PADDING = {
    "4e701b0933d97883136f4cbadf1cc626": (60, -1000, 3065),
    "5711583569efd3e1c2cb1ffa9f9e6361": (46, -1000, 1561),
    "cf52b773ff455db1b7dab10f2b809379": (56, -1000, 2056),
    "f428168f921c20a16fa9df8acf3eddab": (41, -1000, 2254),
}


def test_series_without_padding_are_unchanged(pycerr_ingested):
    manifest = pycerr_ingested.manifest
    got = {row.content_digest: (row.n_slices, row.hu_min, row.hu_max) for row in manifest.itertuples()}
    assert got == DIGESTS_BEFORE_PADDING
