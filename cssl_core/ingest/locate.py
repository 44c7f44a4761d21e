"""Where a file's pixel data element sits and whether all of it is in the file, without decoding.

pydicom's header pass stops right in front of the pixel data element; parsing that one element header
here gives its offset and length, hence cheap truncation checks for every file and, for native syntaxes,
the byte offset from which series workers read pixels directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom

PIXEL_TAG = 0x7FE00010
FLOAT_PIXEL_TAGS = {0x7FE00008, 0x7FE00009}
LONG_LENGTH_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"UC", b"UR", b"SQ", b"SV", b"UV"}
ITEM_TAG = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(slots=True)
class PixelElement:
    """Tag, byte offset of the value and its length (None: undefined length, i.e. encapsulated)."""

    tag: int
    offset: int
    length: int | None


def locate(fp: BinaryIO, at: int, size: int, implicit: bool, little: bool) -> PixelElement | None:
    """Parse the element header at `at`; None when no pixel data element starts there."""
    fp.seek(at)
    head = fp.read(12)
    if len(head) < 8:
        return None
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    tag = group << 16 | elem
    if tag != PIXEL_TAG and tag not in FLOAT_PIXEL_TAGS:
        return None
    # Some writers declare one VR encoding and use the other; pydicom detects this while parsing but the
    # file-level flag keeps the declared one, so decide from the bytes, as pydicom does.
    if not implicit and not _looks_like_vr(head[4:6]):
        implicit = True
    elif implicit and head[4:6] in LONG_LENGTH_VRS and head[6:8] == b"\0\0":
        implicit = False
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        offset = at + 8
    elif head[4:6] in LONG_LENGTH_VRS:
        if len(head) < 12:
            return PixelElement(tag, size + 1, 0)  # cut inside the element header: reads as truncated
        (length,) = struct.unpack(endian + "I", head[8:12])
        offset = at + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        offset = at + 8
    return PixelElement(tag, offset, None if length == UNDEFINED_LENGTH else length)


def _looks_like_vr(two: bytes) -> bool:
    return len(two) == 2 and 65 <= two[0] <= 90 and 65 <= two[1] <= 90


def deflated_has_pixels(path: Path) -> bool:
    """Deflated files are inflated in memory, so offsets mean nothing: a full read tells whether pixel
    data is there. Raises whatever zlib/pydicom raise when the stream is cut or corrupt."""
    return "PixelData" in pydicom.dcmread(path, specific_tags=["PixelData"], defer_size=1024)


def encapsulated_complete(fp: BinaryIO, offset: int, size: int) -> bool | None:
    """Walk the fragment items: True when the sequence delimiter is reached inside the file,
    False when the file ends first (truncated), None when the item structure is broken."""
    pos = offset
    while True:
        if pos + 8 > size:
            return False
        fp.seek(pos)
        group, elem, length = struct.unpack("<HHI", fp.read(8))
        tag = group << 16 | elem
        if tag == SEQUENCE_DELIMITER:
            return True
        if tag != ITEM_TAG or length == UNDEFINED_LENGTH:
            return None
        pos += 8 + length
