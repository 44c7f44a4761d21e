"""Scanner padding on real CT (NSCLC from pycerr, padding written outside the field of view): recognised by
tag, by range tag and by convention, reported per series, kept out of HU statistics and written as air."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from cssl_core.ingest import padding
from cssl_core.ingest.series import content_digest
from tests.cssl_core.ingest.conftest import Ingested, run_ingest
from tests.cssl_core.ingest.corpus import build_padding_corpus, nsclc_ct_files, read, save

N_SLICES = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_padding_corpus(tmp_path_factory.mktemp("padding") / "cohort", n_slices=N_SLICES)


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory) -> Ingested:
    out = tmp_path_factory.mktemp("padding_out") / "out"
    return Ingested(out, run_ingest(corpus.root, out, compress=False), corpus.root)


def _row(ingested, series):
    return ingested.series_of(series.files[0].relative_to(ingested.root).as_posix())


def _volume(ingested, series) -> np.ndarray:
    return sitk.GetArrayFromImage(ingested.image_of(series.files[0].relative_to(ingested.root).as_posix()))


@pytest.mark.parametrize(
    ("name", "source", "padding_hu"),
    [
        ("declared", "tag", (-3024, -3024)),  # -2000 stored, intercept -1024
        ("declared_range", "tag_range", (62512, 64511)),  # 63536..65535 stored: beyond int16 once rescaled
        ("undeclared", "convention", (-3024, -3024)),
    ],
)
def test_padding_is_recognised_reported_and_written_as_air(corpus, ingested, name, source, padding_hu):
    series = corpus.series[name]
    row = _row(ingested, series)
    assert row["padding_source"] == source
    assert (row["padding_hu_min"], row["padding_hu_max"]) == padding_hu == series.padding_hu
    assert row["padding_fraction"] == pytest.approx(series.padding_fraction, abs=1e-12)
    assert 0.15 < row["padding_fraction"] < 0.3  # the corners outside the inscribed circle
    volume = _volume(ingested, series)
    np.testing.assert_array_equal(volume, series.expected_hu)  # tissue untouched, padding -> -1000 HU
    assert volume.min() >= -1024  # nothing blacker than air is left for a window to see
    # statistics over tissue only: the real CT's own range, clipped at -1000 HU, no -3024 or 62512
    assert (row["hu_min"], row["hu_max"]) == series.tissue_hu_range
    assert row["hu_min"] == -1000
    assert row["content_digest"] == content_digest(volume)  # names the volume as written


def test_plain_series_unchanged(corpus, ingested):
    series = corpus.series["plain"]
    row = _row(ingested, series)
    assert row["padding_source"] == "none" and row["padding_fraction"] == 0.0
    assert np.isnan(row["padding_hu_min"]) and np.isnan(row["padding_hu_max"])
    volume = _volume(ingested, series)
    original = np.stack([read(p).pixel_array.astype(np.int16) - 1000 for p in nsclc_ct_files()[:N_SLICES]])
    np.testing.assert_array_equal(volume, original)
    assert (row["hu_min"], row["hu_max"]) == (original.min(), original.max())


def test_padding_does_not_change_the_tissue(corpus, ingested):
    """The same real slices with and without padding: identical wherever there is no padding."""
    plain = _volume(ingested, corpus.series["plain"])
    for name in ("declared", "declared_range", "undeclared"):
        series = corpus.series[name]
        inside = ~series.padding_mask
        np.testing.assert_array_equal(_volume(ingested, series)[inside], plain[inside])


def test_limb_scan_has_no_air_once_padding_is_set_aside(corpus, ingested):
    series = corpus.series["limb"]
    row = _row(ingested, series)
    assert row["padding_source"] == "convention"
    assert (row["rows"], row["cols"], row["n_slices"]) == (64, 64, 20)
    assert (row["hu_min"], row["hu_max"]) == series.tissue_hu_range
    assert -300 < row["hu_min"] < -100  # fat and soft tissue: no air, no lung
    np.testing.assert_array_equal(_volume(ingested, series), series.expected_hu)


def test_cropped_geometry_follows_the_crop(corpus, ingested):
    series = corpus.series["limb"]
    image = ingested.image_of(series.files[0].relative_to(ingested.root).as_posix())
    first = read(series.files[0])
    np.testing.assert_allclose(image.GetOrigin(), [float(v) for v in first.ImagePositionPatient], atol=1e-3)


def test_every_corpus_file_ingested_and_padding_counted(corpus, ingested):
    assert ingested.accounts_for(corpus.root)
    assert set(ingested.files["reason"]) == {"ok"}
    assert ingested.summary.n_series == 5
    assert ingested.summary.n_padded == 4
    summary = json.loads((ingested.out / "summary.json").read_text())
    assert summary["padding"] == {"series": 4, "by_source": {"convention": 2, "none": 1, "tag": 1, "tag_range": 1}}


# --- the rules themselves, on real CT -----------------------------------------------------------------


def _real_volume(patient: str = "pat_2") -> np.ndarray:
    return np.stack([read(p).pixel_array.astype(np.int16) - 1000 for p in nsclc_ct_files(patient)[:N_SLICES]])


def test_noisy_air_is_never_padding():
    """Real CT whose air is made noisy and unclipped (signed data, sd 40 HU): plenty of values below
    -1024, but a smooth tail, not a plateau. pat_1 holds a lot of air (about 40 000 voxels in 8 slices)."""
    volume = _real_volume("pat_1").astype(np.int32)
    rng = np.random.default_rng(0)
    air = volume <= -990
    volume[air] = np.rint(rng.normal(-1000, 40, air.sum()))
    volume = volume.astype(np.int16)
    assert (volume < -1024).sum() > 1000
    assert padding.plateau_values(volume) == []
    mask, report = padding.undeclared_mask(volume)
    assert mask is None and report.source == "none"


def test_clipped_noisy_air_is_no_plateau_below_physical_air():
    """Air clipped at -1024 HU (the usual stored floor) piles up at -1024: not below it, so not padding."""
    volume = _real_volume("pat_1").astype(np.int32)
    air = volume <= -990
    volume[air] = np.clip(np.rint(np.random.default_rng(1).normal(-1000, 40, air.sum())), -1024, None)
    assert padding.plateau_values(volume.astype(np.int16)) == []


def test_conventional_and_other_plateaus():
    volume = _real_volume()
    outside = np.broadcast_to(padding_corners(volume.shape[1:]), volume.shape)
    for fill, source in ((-2048, "convention"), (-2000, "convention"), (-1500, "plateau")):
        padded = np.where(outside, np.int16(fill), volume)
        mask, report = padding.undeclared_mask(padded)
        assert report.source == source and (report.hu_min, report.hu_max) == (fill, fill)
        np.testing.assert_array_equal(mask, outside)


def test_a_few_stray_values_are_not_a_plateau():
    """Isolated artefact voxels at an unusual sub-air value are left alone (fewer than the minimum share)."""
    volume = _real_volume().copy()
    volume.flat[[10, 5000, 90000]] = -1700
    assert padding.plateau_values(volume) == []


def padding_corners(shape: tuple[int, int]) -> np.ndarray:
    r, c = np.ogrid[: shape[0], : shape[1]]
    return (r - shape[0] / 2) ** 2 + (c - shape[1] / 2) ** 2 > (min(shape) / 2) ** 2


# --- reading the declaration: US or SS, raw or converted ---------------------------------------------------


@pytest.mark.parametrize(
    ("vr", "value", "signed", "expected"),
    [
        ("SS", -2000, True, -2000),
        ("US", 63536, False, 63536),
        ("US", 63536, True, -2000),  # a writer that put the bit pattern of -2000 in a US element
        ("SS", -2000, False, 63536),  # ... and the other way round: the pixels' signedness decides
    ],
)
def test_padding_value_read_with_the_pixels_signedness(tmp_path, vr, value, signed, expected):
    source = nsclc_ct_files()[0]
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"):  # implicit, explicit LE/BE
        ds = read(source)
        ds.add_new(0x00280120, vr, value)
        if syntax == "1.2.840.10008.1.2.2":
            ds.PixelData = ds.pixel_array.astype(">u2").tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
        path = tmp_path / f"{syntax}.dcm"
        save(ds, path)
        raw = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[0x00280120])
        assert padding.declared_padding(raw, signed) == padding.DeclaredPadding(expected, expected, False)
        converted = pydicom.dcmread(path, stop_before_pixels=True)
        converted.PixelPaddingValue  # noqa: B018 - force pydicom's own conversion
        assert padding.declared_padding(converted, signed).low == expected


def test_range_limit_in_either_order_and_absent_tags():
    ds = Dataset()
    assert padding.declared_padding(ds, True) is None
    ds.add_new(0x00280120, "SS", -1500)
    ds.add_new(0x00280121, "SS", -2000)
    assert padding.declared_padding(ds, True) == padding.DeclaredPadding(-2000, -1500, True)
    ds = Dataset()
    ds.add_new(0x00280120, "US", None)
    assert padding.declared_padding(ds, False) is None
