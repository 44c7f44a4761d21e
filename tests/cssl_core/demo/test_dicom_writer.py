"""Stored-value encodings: the smallest conventional type that holds the CT range, or a clear refusal."""

from __future__ import annotations

import numpy as np
import pytest

from cssl_core.demo.dicom_writer import StoredEncoding


@pytest.mark.parametrize(
    ("slope", "intercept", "dtype", "bits"),
    [
        (1.0, -1024.0, np.uint16, 12),
        (0.5, -1000.0, np.int16, 16),
        (1.0, 0.0, np.int16, 16),
        (2.0, -2048.0, np.uint16, 12),
    ],
)
def test_encoding_choice(slope, intercept, dtype, bits):
    encoding = StoredEncoding.for_rescale(slope, intercept)
    assert encoding.dtype == np.dtype(dtype) and encoding.bits_stored == bits
    hu = np.array([-1024, -1000, -1, 0, 1, 40, 3071], dtype=np.int16)
    stored = encoding.to_stored(hu)
    assert stored.dtype == np.dtype(dtype)
    assert np.abs(stored * slope + intercept - hu).max() <= slope / 2


def test_values_outside_the_stored_range_are_refused_not_wrapped():
    encoding = StoredEncoding.for_rescale(1.0, -1024.0)
    with pytest.raises(ValueError, match="do not fit"):
        encoding.to_stored(np.array([5000]))
    with pytest.raises(ValueError, match="fit neither"):
        StoredEncoding.for_rescale(0.01, 0.0)
