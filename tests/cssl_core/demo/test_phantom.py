"""The phantom cohort: genuine DICOM that decodes to the generated HU, findings each window erases, fake PHI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from cssl_core.demo.findings import ENHANCING, GGO, LOW_CONTRAST
from cssl_core.demo.phantom import (
    LABEL_COLUMNS,
    PHI_MARKER,
    PhantomConfig,
    cohort_volumes,
    patient_rng,
    phantom_volume,
    write_phantom_cohort,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = {"n_patients": 2, "n_slices": 12, "matrix": 64, "pixel_spacing_mm": 5.0, "slice_thickness_mm": 5.0}
PHI_TEXT_TAGS = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
)
PHI_DATE_TAGS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
MEDIASTINAL = (-135.0, 215.0)  # W350/L40
LUNG = (-1350.0, 150.0)  # W1500/L-600


def window(hu: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo, hi = bounds
    return (np.clip(hu.astype(np.float64), lo, hi) - lo) / (hi - lo)


def read_series(series_dir: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(series_dir.glob("*.dcm"))]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=[(1.0, -1024.0), (0.5, -1000.0)], ids=["slope1", "slope0.5"])
def cohort(request, tmp_path_factory):
    slope, intercept = request.param
    config = PhantomConfig(seed=5, rescale_slope=slope, rescale_intercept=intercept, **SMALL)
    out = tmp_path_factory.mktemp("phantom")
    summary = write_phantom_cohort(out, config)
    return config, out, summary


def test_dicom_decodes_to_the_generated_hu(cohort):
    config, out, _ = cohort
    for patient, hu, _, _ in cohort_volumes(config):
        datasets = read_series(out / f"p{patient:03d}" / "s000")
        assert len(datasets) == config.n_slices
        for k, ds in enumerate(datasets):
            stored = ds.pixel_array
            assert float(ds.RescaleSlope) == config.rescale_slope
            assert float(ds.RescaleIntercept) == config.rescale_intercept
            assert not np.array_equal(stored, hu[k]), "stored values must differ from HU"
            decoded = float(ds.RescaleSlope) * stored.astype(np.float64) + float(ds.RescaleIntercept)
            assert np.abs(decoded - hu[k]).max() <= config.rescale_slope / 2 + 1e-9
            assert ds.PixelRepresentation == (1 if stored.dtype.kind == "i" else 0)
            assert ds.HighBit == ds.BitsStored - 1 and ds.BitsAllocated == 16


def test_stored_encoding_follows_the_rescale(cohort):
    config, out, _ = cohort
    ds = pydicom.dcmread(out / "p000" / "s000" / "0000.dcm")
    if config.rescale_intercept == -1024.0:
        assert (ds.PixelRepresentation, ds.BitsStored) == (0, 12)
    else:  # air at -1024 HU is stored as -48: needs a signed type
        assert (ds.PixelRepresentation, ds.BitsStored) == (1, 16)
        assert ds.pixel_array.min() < 0


def test_ct_image_iod_tags_and_geometry(cohort):
    config, out, _ = cohort
    series_uids, frame_uids, sop_uids = set(), set(), set()
    for patient in range(config.n_patients):
        datasets = read_series(out / f"p{patient:03d}" / "s000")
        for ds in datasets:
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert [float(v) for v in ds.PixelSpacing] == [config.pixel_spacing_mm] * 2
            assert float(ds.SliceThickness) == config.slice_thickness_mm
            assert (ds.Rows, ds.Columns) == (config.matrix, config.matrix)
            assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.RescaleType) == (1, "MONOCHROME2", "HU")
            assert ds.Manufacturer == config.manufacturer and float(ds.KVP) == config.kvp
            assert "WindowCenter" in ds and "WindowWidth" in ds
            sop_uids.add(ds.SOPInstanceUID)
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
        assert len({ds.StudyInstanceUID for ds in datasets}) == 1
        assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
        series_uids.add(datasets[0].SeriesInstanceUID)
        frame_uids.add(datasets[0].FrameOfReferenceUID)
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
        assert np.ptp(positions[:, :2], axis=0).max() == 0
        order = np.argsort([ds.InstanceNumber for ds in datasets])
        steps = np.diff(positions[order, 2])
        assert np.allclose(steps, -config.slice_thickness_mm)  # superior to inferior, evenly spaced
        assert np.allclose([float(ds.SliceLocation) for ds in datasets], positions[:, 2])
    assert len(series_uids) == len(frame_uids) == config.n_patients
    assert len(sop_uids) == config.n_patients * config.n_slices


def test_annotations_follow_the_contract(cohort):
    config, out, summary = cohort
    table = pd.read_parquet(out / "annotations" / "slices.parquet")
    assert list(table.columns) == ["file", *LABEL_COLUMNS, "mask_file", "mask_index"]
    assert len(table) == config.n_patients * config.n_slices == summary["slices"]
    for column in LABEL_COLUMNS:
        assert table[column].dtype == bool
        assert summary[f"slices_{column}"] == int(table[column].sum())
    for patient, _, mask, labels in cohort_volumes(config):
        rows = table[table.file.str.startswith(f"p{patient:03d}/")]
        saved = np.load(out / rows.mask_file.iloc[0])
        assert saved.dtype == np.uint8 and saved.shape == (config.n_slices, config.matrix, config.matrix)
        np.testing.assert_array_equal(saved, mask)
        for row in rows.itertuples():
            assert (out / row.file).is_file()
            k = int(Path(row.file).stem)
            assert row.mask_index == k
            for kind in (GGO, ENHANCING, LOW_CONTRAST):
                assert getattr(row, kind.label) == bool((saved[row.mask_index] == kind.mask_value).any())
                assert getattr(row, kind.label) == bool(labels[kind.label][k])


def test_findings_sit_in_their_bands_and_each_window_erases_the_other_ones():
    config = PhantomConfig(seed=3, n_patients=4, noise_hu=0.0, finding_rate=1.0)
    seen = set()
    for _, hu, mask, labels in cohort_volumes(config):
        for kind in (GGO, ENHANCING, LOW_CONTRAST):
            values = hu[mask == kind.mask_value]
            positive = (mask == kind.mask_value).any(axis=(1, 2))
            np.testing.assert_array_equal(labels[kind.label], positive)
            if values.size == 0:
                continue
            seen.add(kind.label)
            lo, hi = kind.hu_band
            assert lo <= values.min() and values.max() <= hi, kind.label
        assert np.all(window(hu[mask == GGO.mask_value], MEDIASTINAL) == 0.0)  # black
        assert np.all(window(hu[mask == ENHANCING.mask_value], LUNG) == 1.0)  # white
        for bounds in (LUNG, MEDIASTINAL):  # degraded, not erased: never clipped in either window
            lowc = window(hu[mask == LOW_CONTRAST.mask_value], bounds)
            assert np.all((lowc > 0) & (lowc < 1))
        # ...while each window still shows what the other erases: GGO in the lung window, the enhancing
        # lesions in the mediastinal window.
        assert np.all(window(hu[mask == GGO.mask_value], LUNG) > 0)
        assert np.all(window(hu[mask == ENHANCING.mask_value], MEDIASTINAL) < 1)
    assert seen == set(LABEL_COLUMNS)


def test_enhancing_lesions_touch_contrast_filled_vessels():
    config = PhantomConfig(seed=4, n_patients=2, noise_hu=0.0, finding_rate=1.0)
    for _, hu, mask, _ in cohort_volumes(config):
        lesion = mask == ENHANCING.mask_value
        assert lesion.any()
        near = np.zeros_like(lesion)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)):
            near |= np.roll(lesion, (dy, dx), axis=(1, 2))
        ring = hu[near & ~lesion]
        assert ((ring >= 150) & (ring <= 165)).any(), "no +150..+165 vessel beside the enhancing lesion"


def test_noise_keeps_each_finding_mean_in_band():
    config = PhantomConfig(seed=8, n_patients=2, finding_rate=1.0, noise_hu=20.0)
    for _, hu, mask, _ in cohort_volumes(config):
        for kind in (GGO, ENHANCING, LOW_CONTRAST):
            values = hu[mask == kind.mask_value]
            if values.size >= 20:
                assert kind.hu_band[0] <= values.mean() <= kind.hu_band[1]
        assert hu[0, 0, 0] <= -900  # air outside the body
        assert hu.std() > 0


def test_default_config_has_positive_and_negative_slices_for_every_finding():
    config = PhantomConfig()
    counts = dict.fromkeys(LABEL_COLUMNS, 0)
    patients = dict.fromkeys(LABEL_COLUMNS, 0)
    for _, _, _, labels in cohort_volumes(config):
        for column in LABEL_COLUMNS:
            counts[column] += int(labels[column].sum())
            patients[column] += int(labels[column].any())
    total = config.n_patients * config.n_slices
    for column in LABEL_COLUMNS:
        assert 0.15 <= counts[column] / total <= 0.55, (column, counts[column] / total)
        assert 0 < patients[column] <= config.n_patients


def test_a_demo_sized_volume_has_the_configured_shape_and_dtypes():
    # its speed is measured by bench/phantom.py, not asserted here (a loaded CI machine is no stopwatch)
    config = PhantomConfig(n_slices=40, matrix=128)
    hu, mask, _ = phantom_volume(patient_rng(config, 1), config)
    assert hu.shape == mask.shape == (40, 128, 128) and hu.dtype == np.int16 and mask.dtype == np.uint8


def test_same_seed_same_bytes_other_seed_other_patients(tmp_path):
    config = PhantomConfig(seed=9, **SMALL)
    first, second = tmp_path / "a", tmp_path / "b"
    write_phantom_cohort(first, config)
    write_phantom_cohort(second, config)
    reference = tree_bytes(first)
    assert reference == tree_bytes(second)
    (first / "p000" / "stale.dcm").write_bytes(b"old")
    write_phantom_cohort(first, config)  # re-running into the same folder replaces its contents
    assert tree_bytes(first) == reference

    other = tmp_path / "c"
    write_phantom_cohort(other, PhantomConfig(seed=10, **SMALL))
    changed = tree_bytes(other)
    assert changed.keys() == reference.keys()
    assert all(changed[name] != reference[name] for name in changed if name.endswith(".dcm"))
    ids = {pydicom.dcmread(p).PatientID for root in (first, other) for p in root.glob("p*/s000/0000.dcm")}
    assert len(ids) == 2 * config.n_patients


def test_headers_carry_marked_fake_phi_and_paths_do_not(cohort):
    config, out, summary = cohort
    names = set()
    for path in sorted(out.glob("p*/s*/*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for tag in PHI_TEXT_TAGS:
            assert PHI_MARKER in str(ds.data_element(tag).value), tag
        for tag in PHI_DATE_TAGS:
            assert len(str(ds.data_element(tag).value)) == 8 and str(ds.data_element(tag).value).isdigit(), tag
        assert len(str(ds.StudyTime)) == 6 and ds.PatientSex in ("F", "M")
        names.add(str(ds.PatientID))
        assert PHI_MARKER not in path.relative_to(out).as_posix()
    assert len(names) == config.n_patients
    assert PHI_MARKER not in repr(summary)
    assert PHI_MARKER not in (out / "annotations" / "slices.parquet").read_bytes().decode("latin-1")


def test_from_mapping_accepts_params_blocks_and_rejects_typos():
    demo = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["data"]["demo"]
    for block in demo.values():
        if block.get("source") == "phantom":
            settings = {k: v for k, v in block.items() if k != "source"}
            config = PhantomConfig.from_mapping(settings)
            assert config.seed == settings["seed"]
    assert PhantomConfig.from_mapping({"matrix": 96.0, "noise_hu": 5}).matrix == 96
    with pytest.raises(ValueError, match="n_slice"):
        PhantomConfig.from_mapping({"n_slice": 10})
    with pytest.raises(TypeError, match="matrix"):
        PhantomConfig.from_mapping({"matrix": "big"})
    with pytest.raises(ValueError, match="slope"):
        PhantomConfig(rescale_slope=0.0)
    with pytest.raises(ValueError, match="fit"):
        PhantomConfig(rescale_slope=0.01)


def test_refuses_to_clear_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        write_phantom_cohort(tmp_path, PhantomConfig(**SMALL))
    assert (tmp_path / "precious.txt").read_text() == "keep me"
