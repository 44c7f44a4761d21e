"""Typed access to the few header values ingestion needs, parsed straight from pydicom's raw elements.

pydicom converts a value on first access through a general machinery (keyword lookup, VR dispatch,
validation, value objects) that costs as much as reading the whole header. For the handful of simple VRs
used here (US, IS, DS, CS, UI, LO) the raw bytes are parsed directly; any other case (an unexpected VR,
an element pydicom already converted) falls back to pydicom's own conversion, so results never differ
in meaning, only in speed.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

VR_OF = {
    "TransferSyntaxUID": "UI",
    "MediaStorageSOPClassUID": "UI",
    "SOPClassUID": "UI",
    "SeriesInstanceUID": "UI",
    "StudyInstanceUID": "UI",
    "Modality": "CS",
    "PhotometricInterpretation": "CS",
    "LossyImageCompression": "CS",
    "PatientID": "LO",
    "IssuerOfPatientID": "LO",
    "ImagePositionPatient": "DS",
    "ImageOrientationPatient": "DS",
    "PixelSpacing": "DS",
    "SliceThickness": "DS",
    "RescaleSlope": "DS",
    "RescaleIntercept": "DS",
    "NumberOfFrames": "IS",
    "Rows": "US",
    "Columns": "US",
    "SamplesPerPixel": "US",
    "BitsAllocated": "US",
    "BitsStored": "US",
    "PixelRepresentation": "US",
}
TAG_OF = {keyword: tag_for_keyword(keyword) for keyword in VR_OF}
_PAD = " \x00"


class Header:
    """Values of one dataset's top level, by keyword; None when absent, empty or malformed."""

    __slots__ = ("ds",)

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __contains__(self, keyword: str) -> bool:
        return self.ds.get_item(TAG_OF.get(keyword) or tag_for_keyword(keyword)) is not None

    def _raw(self, keyword: str) -> tuple[bytes | None, Any, bool]:
        """(raw bytes, converted fallback value, little endian) for the element."""
        elem = self.ds.get_item(TAG_OF[keyword])
        if elem is None:
            return None, None, True
        if isinstance(elem, RawDataElement) and elem.VR in (None, VR_OF[keyword]):
            return (elem.value or b""), None, elem.is_little_endian
        return None, self.ds[TAG_OF[keyword]].value, True

    def text(self, keyword: str) -> str:
        """String value ('' when absent); raw bytes decode as latin-1, a lossless byte -> str mapping."""
        raw, value, _ = self._raw(keyword)
        if raw is not None:
            return raw.decode("latin-1").strip(_PAD)
        return "" if value is None else str(value).strip(_PAD)

    def integer(self, keyword: str) -> int | None:
        raw, value, little = self._raw(keyword)
        if raw is not None:
            if VR_OF[keyword] == "US":
                return struct.unpack("<H" if little else ">H", raw[:2])[0] if len(raw) >= 2 else None
            raw_text = raw.decode("latin-1").strip(_PAD)
            try:
                return int(raw_text) if raw_text else None
            except ValueError:
                return None
        try:
            return None if value is None or value == "" else int(value)
        except (TypeError, ValueError):
            return None

    def floats(self, keyword: str, count: int) -> tuple[float, ...] | None:
        """`count` finite floats (a DS multi-value), or None when absent or malformed."""
        raw, value, _ = self._raw(keyword)
        if raw is not None:
            parts = [p.strip(_PAD) for p in raw.decode("latin-1").split("\\")]
        elif value is None:
            return None
        elif isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            parts = [value]
        else:
            parts = list(value)
        if len(parts) != count:
            return None
        try:
            out = tuple(float(p) for p in parts)
        except (TypeError, ValueError):
            return None
        return out if all(math.isfinite(v) for v in out) else None
