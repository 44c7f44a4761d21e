"""NIfTI writing through SimpleITK, from a bare numpy array, atomically and checked.

SimpleITK is used so that spacing/origin/direction land in the header exactly as ITK readers expect
(LPS in memory, RAS on disk). The image is built from an array, never read from DICOM, so its metadata
dictionary is empty and no header value can reach the file. Compression is done here with gzip level 1
and a zero timestamp rather than by ITK: noisy CT compresses only ~35% at any level and level 1 is
several times faster, and a fixed timestamp keeps outputs byte-identical across runs (DVC hashes them).

niftilib (inside SimpleITK) reports a short write ("NWAD: wrote only 4096 of ... bytes") on stderr and
returns normally, so every file is read back (header and size) before it is renamed into place; see
cssl_core/atomic_io.py. Its stderr line is held back while writing and dropped when the write failed,
so a full disk ends with our one-line error only.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cssl_core import atomic_io

GZIP_LEVEL = 1
NIFTI1_HEADER, NIFTI2_HEADER = 348, 540


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


def nifti_size(header: bytes) -> tuple[tuple[int, ...], int]:
    """(dims x, y, z..., total file size) that a single-file NIfTI-1 or -2 header declares."""
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(f"{order}i", header[:4])
        if sizeof_hdr == NIFTI1_HEADER:
            dim = struct.unpack(f"{order}8h", header[40:56])
            (bitpix,) = struct.unpack(f"{order}h", header[72:74])
            (offset,) = struct.unpack(f"{order}f", header[108:112])
            break
        if sizeof_hdr == NIFTI2_HEADER:
            (bitpix,) = struct.unpack(f"{order}h", header[14:16])
            dim = struct.unpack(f"{order}8q", header[16:80])
            (offset,) = struct.unpack(f"{order}q", header[168:176])
            break
    else:
        raise ValueError("not a NIfTI-1/2 header")
    dims = tuple(int(d) for d in dim[1 : dim[0] + 1])
    return dims, int(offset) + int(np.prod(dims, dtype=np.int64)) * bitpix // 8


def check_nifti(path: Path, array: np.ndarray) -> None:
    """Read the written header back: it must describe `array` and the file must hold all its voxels."""
    with open(path, "rb") as fp:
        header = fp.read(NIFTI2_HEADER)
    expected = NIFTI1_HEADER + 4 + array.nbytes  # what ITK writes: header, 4-byte extension flag, voxels
    try:
        dims, size = nifti_size(header)
    except (ValueError, struct.error):
        atomic_io.check_size(path, expected)  # too short to hold a header: a short write (or disk full)
        raise atomic_io.ShortWriteError(f"{path.name}: unreadable NIfTI header after writing") from None
    if dims[: array.ndim] != array.shape[::-1]:
        raise atomic_io.ShortWriteError(f"{path.name}: NIfTI header does not describe the volume written")
    atomic_io.check_size(path, size)


@contextmanager
def _held_stderr() -> Iterator[list[bytes]]:
    """Route file descriptor 2 into a pipe for the block; the caller decides whether to pass it on.

    Other threads' stderr output in that window is delayed, not lost (see `_release`). Without a usable
    descriptor 2 (a daemon with it closed) nothing is held.
    """
    held: list[bytes] = []
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield held
        return
    read_end, write_end = os.pipe()
    try:
        os.dup2(write_end, 2)
        yield held
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            held.append(pipe.read())


def _release(held: list[bytes]) -> None:
    data = b"".join(held)
    if data:
        os.write(2, data)


def _write_nifti(array: np.ndarray, geometry: VolumeGeometry, temp: Path) -> None:
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("NiftiImageIO")
    writer.SetFileName(str(temp))
    writer.UseCompressionOff()
    with _held_stderr() as held:
        writer.Execute(to_image(array, geometry))
        check_nifti(temp, array)
    _release(held)  # reached only by a good write: niftilib's complaint about a failed one is dropped


def write_volume(array: np.ndarray, geometry: VolumeGeometry, path: Path, compress: bool) -> None:
    """Write `array` as NIfTI at `path` (.nii or .nii.gz by `compress`), all or nothing."""
    path = Path(path)
    expected = NIFTI1_HEADER + 4 + array.nbytes
    if not compress:
        atomic_io.write_with(path, lambda temp: _write_nifti(array, geometry, temp), expected_size=expected)
        return
    raw = atomic_io.temp_sibling(path.with_name(path.name.removesuffix(".gz")))
    try:
        _write_nifti(array, geometry, raw)
        data = gzip.compress(raw.read_bytes(), compresslevel=GZIP_LEVEL, mtime=0)
        raw.unlink()  # frees its space before the compressed copy needs any
        atomic_io.write_bytes(path, data)
    except Exception as exc:
        raw.unlink(missing_ok=True)
        if isinstance(exc, atomic_io.OutOfSpaceError):
            raise
        if atomic_io.is_out_of_space(exc) or atomic_io.did_not_fit(path.parent, expected):
            raise atomic_io.out_of_space(path.parent, expected) from exc
        raise
    finally:
        raw.unlink(missing_ok=True)
