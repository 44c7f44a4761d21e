"""RTSTRUCT contours of one ROI turned into per-slice labels and masks on the CT's own pixel grid.

Contours are planar polygons in patient mm; a CT slice shows a contour when the contour's plane lies
within half a slice thickness of the slice. Polygons are filled at pixel centres, and several contours on
one slice combine even-odd (the usual RTSTRUCT reading: an inner contour is a hole).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as PolygonPath
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class SliceGeometry:
    """What is needed to map patient mm onto one CT slice's pixels."""

    position: np.ndarray  # ImagePositionPatient (3,)
    row_dir: np.ndarray  # direction of increasing column index (IOP[:3])
    col_dir: np.ndarray  # direction of increasing row index (IOP[3:])
    row_spacing: float  # PixelSpacing[0]: between rows
    col_spacing: float  # PixelSpacing[1]: between columns
    rows: int
    cols: int
    thickness: float

    @classmethod
    def from_dataset(cls, ds: Dataset) -> SliceGeometry:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        return cls(
            position=np.asarray([float(v) for v in ds.ImagePositionPatient]),
            row_dir=iop[:3],
            col_dir=iop[3:],
            row_spacing=float(ds.PixelSpacing[0]),
            col_spacing=float(ds.PixelSpacing[1]),
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            thickness=float(ds.get("SliceThickness") or ds.get("SpacingBetweenSlices") or 0.0),
        )

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of patient points (n, 3) from this slice's plane."""
        return (points - self.position) @ self.normal

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Patient points (n, 3) -> (col, row) pixel coordinates, pixel centres at integers."""
        rel = points - self.position
        return np.stack([rel @ self.row_dir / self.col_spacing, rel @ self.col_dir / self.row_spacing], axis=1)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def roi_contours(rtstruct: Dataset, roi_name: str) -> list[np.ndarray]:
    """The contour polygons (each (n, 3) in mm) of the ROI whose name matches roi_name, ignoring case and
    punctuation ("GTV-1" matches "gtv1")."""
    wanted = _norm(roi_name)
    numbers = [int(r.ROINumber) for r in rtstruct.get("StructureSetROISequence", []) if _norm(str(r.ROIName)) == wanted]
    if not numbers:
        names = [str(r.ROIName) for r in rtstruct.get("StructureSetROISequence", [])]
        raise LookupError(f"no ROI named like {roi_name!r} in the structure set (ROIs: {names})")
    contours = []
    for item in rtstruct.get("ROIContourSequence", []):
        if int(item.ReferencedROINumber) not in numbers:
            continue
        for contour in item.get("ContourSequence", []):
            data = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
            if len(data):
                contours.append(data)
    return contours


def rasterise(
    contours: Sequence[np.ndarray], slices: Sequence[SliceGeometry], value: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mask uint8 (n_slices, rows, cols), bool (n_slices,) "a contour lies on this slice").

    Every contour goes to the nearest slice, if within half a thickness. A contour too small to contain
    any pixel centre still marks the pixels under its vertices, so that a contoured slice does not get
    an empty mask.
    """
    if not slices:
        return np.zeros((0, 0, 0), dtype=np.uint8), np.zeros(0, dtype=bool)
    rows, cols = slices[0].rows, slices[0].cols
    if any((s.rows, s.cols) != (rows, cols) for s in slices):
        raise ValueError("all slices of a series must have the same rows and columns")
    out = np.zeros((len(slices), rows, cols), dtype=np.uint8)
    contoured = np.zeros(len(slices), dtype=bool)
    centres = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), axis=-1).reshape(-1, 2).astype(np.float64)
    for contour in contours:
        centroid = contour.mean(axis=0, keepdims=True)
        distances = np.array([abs(float(s.distance(centroid)[0])) for s in slices])
        k = int(np.argmin(distances))
        if distances[k] > slices[k].thickness / 2.0 + 1e-3:
            continue
        contoured[k] = True
        pixels = slices[k].to_pixels(contour)
        inside = PolygonPath(pixels).contains_points(centres).reshape(rows, cols)
        if not inside.any():
            cr = np.rint(pixels).astype(int)
            ok = (cr[:, 0] >= 0) & (cr[:, 0] < cols) & (cr[:, 1] >= 0) & (cr[:, 1] < rows)
            inside[cr[ok, 1], cr[ok, 0]] = True
        layer = out[k] == value
        out[k] = np.where(layer ^ inside, value, 0).astype(np.uint8)
    return out, contoured
