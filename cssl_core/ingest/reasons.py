"""Stable reason codes for every input file's fate.

Codes are part of the output contract (`files.parquet.reason`): downstream dashboards and tests key on
them, so they never change meaning. Messages are templates filled only with non-identifying facts
(transfer syntax, modality, counts): never a header value that could identify a patient.
"""

from __future__ import annotations

from enum import StrEnum


class FileStatus(StrEnum):
    INGESTED = "ingested"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"


class Reason(StrEnum):
    OK = "ok"
    # ignored: not meant to be images
    ANNOTATION = "annotation"  # sidecar labels / masks written beside the DICOM
    DICOMDIR = "dicomdir"  # media directory index, not an image
    HIDDEN_FILE = "hidden_file"  # .DS_Store and friends
    # quarantined: meant to be data but unusable
    NOT_DICOM = "not_dicom"
    UNREADABLE = "unreadable"  # I/O error or header parse failure
    TRUNCATED = "truncated"  # header or pixel data shorter than declared
    NOT_IMAGE = "not_image"  # DICOM without pixel data (RTSTRUCT, SR, RTPLAN, ...)
    NOT_CT = "not_ct"  # an image, but not CT
    MISSING_SERIES_UID = "missing_series_uid"
    MISSING_GEOMETRY = "missing_geometry"  # no position/orientation/spacing
    UNDECODABLE = "undecodable"  # compressed pixel data no installed decoder could read
    INCONSISTENT_SHAPE = "inconsistent_shape"  # rows/cols differ from the rest of its series
    MIXED_ORIENTATION = "mixed_orientation"  # orientation differs from the rest of its series
    DUPLICATE_POSITION = "duplicate_position"  # a second slice at an already-filled position
    UNSUPPORTED_PIXELS = "unsupported_pixels"  # colour / multi-sample CT, unknown photometric
