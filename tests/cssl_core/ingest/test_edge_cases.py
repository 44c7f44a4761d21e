"""Edge-case files from pydicom / pydicom-data and files derived from them: each is ingested with the
right HU or quarantined/ignored with the right reason, and every file found has exactly one row."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

LOSSLESS = [
    "real/CT_small.dcm",
    "real/693_UNCR.dcm",
    "real/693_J2KR.dcm",
    "real/bad_sequence.dcm",
    "real/eCT_Supplemental.dcm",
    "syntax/CT_small_rle.dcm",
    "syntax/CT_small_deflated.dcm",
    "syntax/CT_small_bigendian.dcm",
    "syntax/MR_small_jpeg_ls_as_CT.dcm",
]


def test_every_file_found_has_one_row(edge_corpus, edge_ingested):
    assert edge_ingested.accounts_for(edge_corpus.root)
    assert sorted(edge_corpus.expected) == list(edge_ingested.files["path"])  # an expectation for every file


def test_status_and_reason_per_file(edge_corpus, edge_ingested):
    got = {row.path: (row.status, row.reason) for row in edge_ingested.files.itertuples()}
    wrong = {path: (want, got[path]) for path, want in edge_corpus.expected.items() if got[path] != want}
    assert not wrong, wrong


@pytest.mark.parametrize("rel", LOSSLESS)
def test_lossless_hu_equals_pydicom_decoding_of_original(edge_corpus, edge_ingested, rel):
    ours = sitk.GetArrayFromImage(edge_ingested.image_of(rel))
    np.testing.assert_array_equal(ours, edge_corpus.reference_hu[rel])


def test_lossy_jpeg2000_close_to_uncompressed(edge_corpus, edge_ingested):
    rel = "real/693_J2KI.dcm"
    ours = sitk.GetArrayFromImage(edge_ingested.image_of(rel)).astype(np.float64)
    reference = edge_corpus.reference_hu[rel].astype(np.float64)
    assert np.abs(ours - reference).mean() < 100
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.95


def test_transfer_syntax_names_in_manifest(edge_ingested):
    names = {edge_ingested.series_of(rel)["transfer_syntaxes"] for rel in LOSSLESS}
    assert {
        "RLE Lossless",
        "Deflated Explicit VR Little Endian",
        "Explicit VR Big Endian",
        "JPEG-LS Lossless Image Compression",
        "JPEG 2000 Image Compression (Lossless Only)",
    } <= names


def test_enhanced_multiframe_uses_functional_groups(edge_ingested):
    rel = "real/eCT_Supplemental.dcm"
    row = edge_ingested.series_of(rel)
    assert bool(row["is_multiframe"]) and row["n_slices"] == 2 and row["n_files"] == 1
    assert row["spacing_z"] == pytest.approx(10.0)
    assert row["spacing_x"] == pytest.approx(0.388672)
    image = edge_ingested.image_of(rel)
    np.testing.assert_allclose(image.GetDirection(), (-1, 0, 0, 0, 1, 0, 0, 0, -1), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), (99.5, -301.5, -149.0), atol=1e-4)


def test_single_slice_spacing_is_slice_thickness(edge_ingested):
    assert edge_ingested.series_of("real/CT_small.dcm")["spacing_z"] == pytest.approx(5.0)
    assert edge_ingested.series_of("real/bad_sequence.dcm")["spacing_z"] == pytest.approx(1.0)


def test_missing_slice_flags_gap_and_keeps_median_spacing(edge_ingested):
    row = edge_ingested.series_of("series_gap/slice_00.dcm")
    assert row["n_slices"] == 5
    assert bool(row["has_gaps"]) and bool(row["spacing_uneven"])
    assert row["spacing_z"] == pytest.approx(5.0)
    slices = edge_ingested.slices[edge_ingested.slices["series_key"] == row.name]
    np.testing.assert_allclose(slices["z_mm"], [0, 5, 10, 20, 25])


def test_duplicate_position_keeps_first_copy(edge_ingested):
    row = edge_ingested.series_of("series_dup/slice_00.dcm")
    assert row["n_slices"] == 4 and row["n_files"] == 4
    assert not row["has_gaps"] and not row["spacing_uneven"]
    dropped = edge_ingested.file("series_dup/slice_02_copy.dcm")
    assert dropped["series_key"] == row.name
    volume = sitk.GetArrayFromImage(edge_ingested.image_of("series_dup/slice_00.dcm"))
    # slices were written with +10 HU per position: order and content survive the duplicate
    np.testing.assert_array_equal(np.diff(volume.astype(int), axis=0), np.full((3, 128, 128), 10))


@pytest.mark.parametrize(
    ("folder", "odd_one"),
    [("series_orient", "slice_04.dcm"), ("series_shape", "slice_01.dcm")],
)
def test_misfit_slice_is_dropped_from_its_series(edge_ingested, folder, odd_one):
    kept = "slice_00.dcm"
    row = edge_ingested.series_of(f"{folder}/{kept}")
    assert row["n_slices"] == 4 and row["rows"] == 128
    assert edge_ingested.file(f"{folder}/{odd_one}")["series_key"] == row.name


def test_messages_are_templates_without_exception_text(edge_ingested):
    messages = edge_ingested.files["message"]
    assert messages.str.len().gt(20).all()
    assert not messages.str.contains("Traceback|Error:|'|\"|\\(0x|\\d{4},\\d{4}", regex=True).any()
    undecodable = edge_ingested.file("broken/J2K_corrupt_codestream.dcm")["message"]
    assert "JPEG 2000" in undecodable and "decoder" in undecodable


@pytest.mark.parametrize("rel", ["real/693_UNCR.dcm", "real/693_J2KR.dcm"])
def test_real_declared_padding(edge_ingested, rel):
    """693_*: real CT declaring Pixel Padding Value -2000 (signed, stored), intercept -1024: -3024 HU."""
    row = edge_ingested.series_of(rel)
    assert row["padding_source"] == "tag"
    assert (row["padding_hu_min"], row["padding_hu_max"]) == (-3024, -3024)
    assert row["padding_fraction"] == pytest.approx(55772 / 512**2)  # every -2000 of the original
    assert row["hu_min"] == -1024  # the tissue's own minimum, not the padding's


def test_lossy_padding_edge_is_padding_too(edge_ingested):
    """Lossy JPEG 2000 smears the -3024 HU padding into values between it and air (down to -3995 HU here):
    in a lossy file with sub-air padding declared, everything below -1024 HU is padding."""
    row = edge_ingested.series_of("real/693_J2KI.dcm")
    assert row["padding_source"] == "tag"
    assert row["padding_hu_min"] == -3995 and row["padding_hu_max"] == -1025
    assert row["hu_min"] == -1024
    assert sitk.GetArrayFromImage(edge_ingested.image_of("real/693_J2KI.dcm")).min() == -1024


def test_declared_padding_that_matches_nothing_changes_nothing(edge_ingested):
    """CT_small declares -2000 too, but no pixel holds it: no padding, volume as decoded (checked above)."""
    row = edge_ingested.series_of("real/CT_small.dcm")
    assert row["padding_source"] == "none" and row["padding_fraction"] == 0.0
