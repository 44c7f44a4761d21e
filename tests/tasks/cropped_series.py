"""A real cohort with one series that has no air in it: real NSCLC chest CTs (pycerr), one of them cropped.

A reconstruction cropped to the body interior (or a limb scan) has no air, so its lowest HU sits far
above -1000. Cropping a real series to a 32 x 32 pixel box of chest wall muscle (found by search over the
series' minimum projection: every voxel of the box is above -200 HU in every slice) gives exactly that,
with the scanner's own noise and headers. The crop is written as a new series (fresh UIDs); the two other
patients are copied as delivered (their CT files only, so nothing is quarantined).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.cssl_core.ingest.corpus import pycerr_root, read, renew, save

KEPT = ("pat_2", "pat_3")
CROPPED_FROM = "pat_2"
CROP_FOLDER = "cropped"
BOX = (106, 0, 32)  # first row, first column, size: the chest wall beside the spine in pat_2


def _ct_files(patient: str) -> list[Path]:
    files = sorted(p for p in (pycerr_root() / patient).rglob("*") if p.is_file())
    return [p for p in files if getattr(read(p), "Modality", "") == "CT"]


def _crop(path: Path, out: Path, series_uid: str) -> float:
    """Write the crop of one slice as a new instance of `series_uid`; returns its lowest HU."""
    ds = read(path)
    row0, col0, size = BOX
    pixels = ds.pixel_array[row0 : row0 + size, col0 : col0 + size].copy()
    spacing_row, spacing_col = (float(v) for v in ds.PixelSpacing)
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    origin = np.array([float(v) for v in ds.ImagePositionPatient])
    origin = origin + col0 * spacing_col * orientation[:3] + row0 * spacing_row * orientation[3:]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in origin]
    ds.Rows, ds.Columns = size, size
    ds.PixelData = pixels.tobytes()
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if tag in ds:
            delattr(ds, tag)
    save(renew(ds, series_uid), out)
    return float(pixels.min()) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def write_cohort(root: Path) -> dict[str, object]:
    """Two real series and one cropped copy under root; returns the crop's file paths and lowest HU."""
    from pydicom.uid import generate_uid

    for patient in KEPT:
        for path in _ct_files(patient):
            target = root / patient / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    series_uid = generate_uid()
    cropped, lowest = [], []
    for path in _ct_files(CROPPED_FROM):
        out = root / CROP_FOLDER / path.name
        lowest.append(_crop(path, out, series_uid))
        cropped.append(out.relative_to(root).as_posix())
    return {"files": sorted(cropped), "hu_min": min(lowest)}
