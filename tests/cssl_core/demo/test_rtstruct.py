"""Contours in patient mm land on the right pixels of the right slice."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from cssl_core.demo.rtstruct import SliceGeometry, rasterise, roi_contours


def geometry(z: float, origin=(-10.0, -20.0), spacing=(2.0, 1.0), shape=(10, 12), thickness=3.0) -> SliceGeometry:
    return SliceGeometry(
        position=np.array([origin[0], origin[1], z]),
        row_dir=np.array([1.0, 0.0, 0.0]),
        col_dir=np.array([0.0, 1.0, 0.0]),
        row_spacing=spacing[0],
        col_spacing=spacing[1],
        rows=shape[0],
        cols=shape[1],
        thickness=thickness,
    )


def square(x0, x1, y0, y1, z) -> np.ndarray:
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


def test_polygon_fills_pixel_centres_inside_it_on_the_nearest_slice():
    slices = [geometry(z) for z in (0.0, 3.0, 6.0)]
    # x in [-7.5, -4.5] -> columns 3..5 (column spacing 1 mm); y in [-15.5, -10.5] -> rows 3..4 (2 mm rows)
    mask, contoured = rasterise([square(-7.5, -4.5, -15.5, -10.5, 3.4)], slices, value=4)
    assert contoured.tolist() == [False, True, False]
    expected = np.zeros((10, 12), dtype=bool)
    expected[3:5, 3:6] = True
    np.testing.assert_array_equal(mask[1] == 4, expected)
    assert not mask[0].any() and not mask[2].any()


def test_contours_off_every_slice_are_ignored_and_holes_are_cut():
    slices = [geometry(0.0)]
    mask, contoured = rasterise([square(-10, 1, -20, -2, 2.0)], slices, value=4)
    assert not contoured.any() and not mask.any()
    outer, inner = square(-10.5, 1.5, -20.5, -1.5, 0.0), square(-6.5, -3.5, -14.5, -9.5, 0.0)
    mask, _ = rasterise([outer, inner], slices, value=4)
    assert mask[0, 0, 0] == 4 and mask[0, 4, 5] == 0  # inside the outer contour, inside the hole


def test_tiny_contour_still_marks_a_pixel():
    mask, contoured = rasterise([square(-5.1, -4.9, -10.1, -9.9, 0.0)], [geometry(0.0)], value=4)
    assert contoured[0] and mask[0].sum() // 4 >= 1


def test_roi_is_found_by_name_ignoring_case_and_punctuation():
    ds = Dataset()
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 7, "gtv1"
    other = Dataset()
    other.ROINumber, other.ROIName = 2, "Lung"
    ds.StructureSetROISequence = [other, roi]
    item = Dataset()
    item.ReferencedROINumber = 7
    contour = Dataset()
    contour.ContourData = [0, 0, 1, 1, 0, 1, 1, 1, 1]
    item.ContourSequence = [contour]
    ds.ROIContourSequence = [item]
    (found,) = roi_contours(ds, "GTV-1")
    assert found.shape == (3, 3)
    with pytest.raises(LookupError, match="Lung"):
        roi_contours(ds, "PTV")
