"""Small pure functions: spacing analysis, duplicate detection, unused bits, HU rounding, messages."""

from __future__ import annotations

import numpy as np
import pytest

from cssl_core.ingest import geometry
from cssl_core.ingest.header import read_header
from cssl_core.ingest.messages import message, safe_modality
from cssl_core.ingest.pixels import correct_unused_bits, read_stored, to_hu
from cssl_core.ingest.reasons import Reason
from cssl_core.ingest.records import ImageRecord
from tests.cssl_core.ingest.corpus import pydicom_file, read, renew, save


def test_even_spacing_uses_first_to_last_like_itk():
    z = np.array([0.0, 2.9999999, 6.0000001, 9.0])
    report = geometry.analyse_spacing(z, 1.0)
    assert report.spacing == 3.0 and not report.uneven and not report.has_gaps


def test_gap_and_jitter():
    report = geometry.analyse_spacing(np.array([0, 5, 10, 20, 25.0]), 1.0)
    assert report.spacing == 5.0 and report.uneven and report.has_gaps and report.n_gaps == 1
    jitter = geometry.analyse_spacing(np.array([0, 5, 10.4, 15, 20.0]), 1.0)
    assert jitter.uneven and not jitter.has_gaps and jitter.spacing == 5.0
    rounded = geometry.analyse_spacing(np.array([0, 0.62, 1.25, 1.87, 2.5]), 1.0)  # positions at 0.01 mm
    assert not rounded.uneven


def test_single_slice_uses_given_thickness():
    assert geometry.analyse_spacing(np.array([12.0]), 2.5).spacing == 2.5


def test_duplicate_mask_keeps_first():
    mask = geometry.duplicate_mask(np.array([0.0, 0.0, 1.0, 1.0000001, 1.0, 2.0]))
    assert mask.tolist() == [False, True, False, True, True, False]


def test_direction_columns_are_row_col_normal():
    d = geometry.direction([1, 0, 0, 0, 0, -1])  # coronal
    np.testing.assert_allclose(np.array(d).reshape(3, 3), [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-12)


@pytest.mark.parametrize("signed", [False, True])
def test_unused_bits_corrected_like_pydicom(tmp_path, signed):
    """12 bits stored in 16 with garbage in the top 4 bits: masked (unsigned) or sign-extended (signed)."""
    ds = renew(read(pydicom_file("CT_small.dcm")))
    raw = np.arange(128 * 128, dtype=np.uint16).reshape(128, 128) * 7
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
    ds.PixelData = raw.tobytes()
    path = save(ds, tmp_path / "ct12.dcm")
    record = read_header(tmp_path, "ct12.dcm", b"s")
    assert isinstance(record, ImageRecord) and record.pixel.native_offset is not None
    ours = read_stored(path, record.pixel)[0]
    np.testing.assert_array_equal(ours, read(path).pixel_array)
    expected = raw.astype(np.int16) if signed else raw
    np.testing.assert_array_equal(ours, correct_unused_bits(expected, 12, 16, signed))


def test_hu_rounding_clipping_and_per_frame_rescale():
    stored = np.array([[[0, 1, 3]], [[60000, 2, 5]]], dtype=np.uint16)
    out = np.empty(stored.shape, np.int16)
    to_hu(stored, [0.5, 1.0], [-1000.0, -1024.0], out)
    assert out[0].tolist() == [[-1000, -1000, -998]]  # -999.5 -> -1000 (half to even), -998.5 -> -998
    assert out[1].tolist() == [[32767, -1022, -1019]]  # 58976 clipped to int16


def test_messages_never_echo_unsafe_values():
    assert safe_modality("CT") == "CT"
    assert safe_modality("Quorrax^Zelbinda") == "unknown"
    assert "unknown" in message(Reason.NOT_CT, modality=safe_modality("1.2.3.4"))
    assert "?" in message(Reason.UNDECODABLE)  # missing facts never raise


def test_header_pass_prefers_native_fast_path(tmp_path):
    record = read_header(pydicom_file("CT_small.dcm").parent, "CT_small.dcm", b"s")
    assert isinstance(record, ImageRecord)
    assert record.pixel.native_offset is not None and record.pixel.syntax_name == "Explicit VR Little Endian"
    assert record.positions == ((-158.135803, -179.035797, -75.699997),)


@pytest.mark.parametrize("declared_implicit", [True, False])
def test_pixel_element_follows_the_bytes_not_the_declared_encoding(declared_implicit):
    """Writers sometimes declare explicit VR and write implicit (or the reverse): the bytes decide."""
    import io
    import struct

    from cssl_core.ingest.locate import locate

    implicit = struct.pack("<HHI", 0x7FE0, 0x0010, 32768) + b"\x00" * 32768
    explicit = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 32768) + b"\x00" * 32768
    data = explicit if declared_implicit else implicit  # always the other encoding
    element = locate(io.BytesIO(data), 0, len(data), declared_implicit, True)
    assert (element.offset, element.length) == (len(data) - 32768, 32768)
