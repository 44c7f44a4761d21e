"""Human-readable messages for files.parquet: what happened to a file and what to do about it.

Messages are fixed templates filled with non-identifying facts only (transfer syntax *names*, modality
codes, counts, exception *class* names). Header values and `str(exception)` never go in: pydicom quotes
offending values in its errors, and those can be names, IDs, dates or UIDs.
"""

from __future__ import annotations

import re

from cssl_core.ingest.reasons import Reason

TEMPLATES: dict[Reason, str] = {
    Reason.OK: "ingested: {frames} slice(s) into its series volume ({syntax}){note}",
    Reason.ANNOTATION: "annotation side-car, read for labels and masks only; nothing to do",
    Reason.DICOMDIR: "DICOMDIR media index, not an image; nothing to do",
    Reason.HIDDEN_FILE: "hidden file skipped; remove it from the delivery if it is not needed",
    Reason.NOT_DICOM: "not a DICOM file ({detail}); remove it or re-export it as DICOM",
    Reason.UNREADABLE: "the file could not be read ({error}); check permissions and re-copy or re-export it",
    Reason.TRUNCATED: "the file ends before its {part} is complete; re-copy or re-export the file",
    Reason.NOT_IMAGE: "{modality} object without pixel data (e.g. contours, plans, reports); not ingested",
    Reason.NOT_CT: "modality {modality} is not CT; only CT is ingested, remove it or ignore this row",
    Reason.MISSING_SERIES_UID: "no Series Instance UID, so it cannot be grouped; re-export with series information",
    Reason.MISSING_GEOMETRY: "missing or invalid {what}; the slice cannot be placed in 3-D, re-export with geometry",
    Reason.UNDECODABLE: (
        "pixel data ({syntax}) could not be decoded ({error}); install a decoder for this transfer syntax "
        "or re-export uncompressed"
    ),
    Reason.INCONSISTENT_SHAPE: ("{what} differs {context}; dropped from the volume, re-export the series or split it"),
    Reason.MIXED_ORIENTATION: (
        "image orientation differs {context}; dropped from the volume, check whether it belongs to another "
        "reconstruction"
    ),
    Reason.DUPLICATE_POSITION: (
        "another slice of its series already sits at this position; this copy was dropped, remove duplicates"
    ),
    Reason.UNSUPPORTED_PIXELS: "{what} is not supported for CT (need 1 sample per pixel, MONOCHROME, integers)",
}

_SAFE_CODE = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def safe_modality(value: object) -> str:
    """A modality code for messages: DICOM CS syntax only, anything else becomes 'unknown'."""
    text = str(value or "").strip().upper()
    return text if _SAFE_CODE.match(text) else "unknown"


def among_series(others: int) -> str:
    """Context phrase for a file that disagrees with the rest of its series."""
    return f"from the other {others} file(s) of its series"


WITHIN_FILE = "between the frames of this file"


def error_name(exc: BaseException) -> str:
    """The exception's class name: says what kind of failure without quoting any header value."""
    return type(exc).__name__


def message(reason: Reason, **facts: object) -> str:
    """Fill the reason's template; a missing fact shows as '?' rather than failing the run."""
    template = TEMPLATES[reason]
    try:
        return template.format(**facts)
    except (KeyError, IndexError):
        return template.format_map(_Missing(facts))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"
