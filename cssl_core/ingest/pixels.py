"""Stored pixel values -> Hounsfield units.

Native (uncompressed) pixel data is read straight from the byte offset found in the header pass: parsing
the header twice would cost as much as the rest of the work for small slices. Everything else (JPEG,
JPEG-LS, JPEG 2000, RLE, deflate, files that needed forced reading) goes through pydicom's decoders and
their pylibjpeg plugins. Either way the result is the *stored* values, with unused high bits corrected
exactly as pydicom does, and HU = slope * stored + intercept per frame, rounded and clipped to int16.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cssl_core.ingest.records import PixelFormat

INT16_MIN, INT16_MAX = -32768, 32767


class PixelDataTooShort(EOFError):
    """The file holds fewer pixel bytes than its header declares."""


def stored_dtype(pixel: PixelFormat) -> np.dtype:
    kind = "i" if pixel.pixel_representation == 1 else "u"
    order = "<" if pixel.little_endian else ">"
    return np.dtype(f"{order}{kind}{pixel.bits_allocated // 8}")


def correct_unused_bits(arr: np.ndarray, bits_stored: int, bits_allocated: int, signed: bool) -> np.ndarray:
    """Ignore bits above BitsStored (PS3.5 8.1.1): mask them for unsigned data, sign-extend signed data.

    Writers may leave overlay bits or garbage there; pydicom 3 and GDCM both discard them.
    """
    if bits_stored >= bits_allocated:
        return arr
    if not signed:
        return np.bitwise_and(arr, arr.dtype.type((1 << bits_stored) - 1))
    shift = bits_allocated - bits_stored
    out = np.left_shift(arr, shift)
    np.right_shift(out, shift, out=out)
    return out


def read_native(path: Path, pixel: PixelFormat) -> np.ndarray:
    """Stored values of native pixel data, read from the known byte offset: (frames, rows, cols)."""
    dtype = stored_dtype(pixel)
    count = pixel.frames * pixel.rows * pixel.cols
    with open(path, "rb") as fp:
        fp.seek(int(pixel.native_offset or 0))
        buffer = fp.read(count * dtype.itemsize)
    if len(buffer) < count * dtype.itemsize:
        raise PixelDataTooShort("pixel data shorter than declared")
    arr = np.frombuffer(buffer, dtype=dtype).reshape(pixel.frames, pixel.rows, pixel.cols)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return correct_unused_bits(arr, pixel.bits_stored, pixel.bits_allocated, pixel.pixel_representation == 1)


def decode(path: Path, pixel: PixelFormat) -> np.ndarray:
    """Stored values through pydicom's decoders (compressed, deflated or oddly encoded files)."""
    if pixel.forced or pixel.transfer_syntax == DeflatedExplicitVRLittleEndian:
        ds = pydicom.dcmread(path, force=pixel.forced)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = pixel.transfer_syntax
        arr = ds.pixel_array
    else:
        arr = pixel_array(str(path))
    expected = (pixel.frames, pixel.rows, pixel.cols)
    if arr.size != pixel.frames * pixel.rows * pixel.cols:
        raise ValueError("decoded pixel count does not match the header")
    return arr.reshape(expected)


def read_stored(path: Path, pixel: PixelFormat) -> np.ndarray:
    """Stored values (frames, rows, cols) by the fastest route the header pass allowed."""
    if pixel.native_offset is not None:
        return read_native(path, pixel)
    return decode(path, pixel)


def to_hu(stored: np.ndarray, slopes: Sequence[float], intercepts: Sequence[float], out: np.ndarray) -> None:
    """Write HU = slope * stored + intercept into `out` (int16), frame by frame.

    Integral slope and intercept (nearly all CT) stay in integer arithmetic, which is exact and fast;
    otherwise float64 with round-half-to-even. Values outside int16 are clipped, not wrapped.
    """
    frames = stored.shape[0]
    params = list(zip(slopes, intercepts, strict=True))
    if len(set(params)) == 1:
        groups = [(slice(0, frames), params[0])]
    else:
        groups = [(slice(i, i + 1), p) for i, p in enumerate(params)]
    for where, (slope, intercept) in groups:
        block = stored[where]
        if float(slope).is_integer() and float(intercept).is_integer():
            wide = np.int64 if block.dtype.itemsize >= 4 else np.int32
            values = block.astype(wide)
            if slope != 1:
                values *= int(slope)
            values += int(intercept)
        else:
            values = np.rint(block * float(slope) + float(intercept))
        np.clip(values, INT16_MIN, INT16_MAX, out=values)
        out[where] = values
