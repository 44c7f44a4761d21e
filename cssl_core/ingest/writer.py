"""NIfTI writing through SimpleITK, from a bare numpy array.

SimpleITK is used so that spacing/origin/direction land in the header exactly as ITK readers expect
(LPS in memory, RAS on disk). The image is built from an array, never read from DICOM, so its metadata
dictionary is empty and no header value can reach the file. Compression is done here with gzip level 1
and a zero timestamp rather than by ITK: noisy CT compresses only ~35% at any level and level 1 is
several times faster, and a fixed timestamp keeps outputs byte-identical across runs (DVC hashes them).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

GZIP_LEVEL = 1


@dataclass(frozen=True, slots=True)
class VolumeGeometry:
    spacing: tuple[float, float, float]  # (column spacing, row spacing, slice spacing) in mm
    origin: tuple[float, float, float]  # first slice's ImagePositionPatient (LPS)
    direction: tuple[float, ...]  # row-major 3x3, columns = row dir, column dir, slice normal


def volume_name(series_key: str, compress: bool) -> str:
    return f"{series_key}.nii.gz" if compress else f"{series_key}.nii"


def to_image(array: np.ndarray, geometry: VolumeGeometry) -> sitk.Image:
    """A SimpleITK image from a (slices, rows, cols) array; the metadata dictionary stays empty."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing([float(v) for v in geometry.spacing])
    image.SetOrigin([float(v) for v in geometry.origin])
    image.SetDirection([float(v) for v in geometry.direction])
    return image


def write_volume(array: np.ndarray, geometry: VolumeGeometry, path: Path, compress: bool) -> None:
    """Write `array` as NIfTI at `path` (.nii or .nii.gz by `compress`)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial.nii")
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("NiftiImageIO")
    writer.SetFileName(str(partial))
    writer.UseCompressionOff()
    writer.Execute(to_image(array, geometry))
    if compress:
        data = partial.read_bytes()
        path.write_bytes(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))
        partial.unlink()
    else:
        os.replace(partial, path)
