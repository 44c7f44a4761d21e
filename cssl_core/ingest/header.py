"""Header pass: read one file's header (no pixels) and decide its fate before any decoding.

Everything that can be known from the header is decided here, so series workers only ever see files that
are CT images with usable geometry and pixel data that is present in full (see locate.py for how that is
checked without decoding). Identifiers are hashed here and never leave this module in clear.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import Tag
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    LegacyConvertedEnhancedCTImageStorage,
    MediaStorageDirectoryStorage,
)

from cssl_core.ingest import geometry
from cssl_core.ingest.fields import Header
from cssl_core.ingest.frames import PER_FRAME_GROUPS, frame_attributes
from cssl_core.ingest.keys import keyed_hash
from cssl_core.ingest.locate import (
    FLOAT_PIXEL_TAGS,
    PIXEL_TAG,
    PixelElement,
    deflated_has_pixels,
    encapsulated_complete,
    locate,
)
from cssl_core.ingest.messages import WITHIN_FILE, error_name, message, safe_modality
from cssl_core.ingest.padding import declared_padding
from cssl_core.ingest.reasons import FileStatus, Reason
from cssl_core.ingest.records import FileOutcome, ImageRecord, PixelFormat

HEADER_KEYWORDS = [
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "LossyImageCompression",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]
# Pre-built tags: pydicom converts keywords on every call otherwise.
HEADER_TAGS = [Tag(keyword) for keyword in HEADER_KEYWORDS]
CT_CLASSES = {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
# Syntaxes that may be lossy (JPEG 2000 and HTJ2K "may be lossy" too): see padding.py for why it matters.
LOSSY_SYNTAXES = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000, HTJ2K}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
# Errors pydicom raises when the file ends in the middle of an element.
_SHORT_READ_ERRORS = (EOFError, struct.error, BytesLengthException)


class _Verdict(Exception):
    """Internal: a file's fate was decided; carries the outcome out of nested helpers."""

    def __init__(self, outcome: FileOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def _quarantine(rel: str, reason: Reason, series_key: str | None = None, **facts: object) -> _Verdict:
    return _Verdict(FileOutcome(rel, FileStatus.QUARANTINED, reason, message(reason, **facts), series_key))


def syntax_name(uid: str) -> str:
    """Transfer syntax name for outputs; an unknown (private) syntax never shows its UID."""
    name = pydicom.uid.UID(uid).name
    return "unknown transfer syntax" if not name or _UID.match(name) else name


def read_header(input_dir: Path, rel: str, secret: bytes) -> FileOutcome | ImageRecord:
    """Classify one file: an ImageRecord when it is an ingestible CT image, else its final outcome.

    Never raises: an unexpected error becomes `unreadable` (with the exception's class name only).
    """
    try:
        return _read(Path(input_dir) / rel, rel, secret)
    except _Verdict as verdict:
        return verdict.outcome
    except OSError as exc:
        return _quarantine(rel, Reason.UNREADABLE, error=error_name(exc)).outcome
    except Exception as exc:  # noqa: BLE001 - one broken file must never stop the run
        return _quarantine(rel, Reason.UNREADABLE, error=error_name(exc)).outcome


def _read(path: Path, rel: str, secret: bytes) -> FileOutcome | ImageRecord:
    size = path.stat().st_size
    if size == 0:
        raise _quarantine(rel, Reason.NOT_DICOM, detail="empty file")
    with open(path, "rb") as fp:
        has_marker = _has_dicm_marker(fp)
        ds, forced = _parse(fp, rel, has_marker)
        pixel_at = fp.tell()
        meta = Header(getattr(ds, "file_meta", None) or Dataset())
        if meta.text("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
            return FileOutcome(rel, FileStatus.IGNORED, Reason.DICOMDIR, message(Reason.DICOMDIR))
        syntax = _transfer_syntax(ds, meta)
        if syntax == DeflatedExplicitVRLittleEndian:
            element = _deflated_element(path, rel)
        else:
            implicit, little = ds.original_encoding
            element = locate(fp, pixel_at, size, bool(implicit), little is not False)
        return _classify(ds, meta, rel, secret, syntax, element, size, fp, forced, has_marker)


def _has_dicm_marker(fp: BinaryIO) -> bool:
    head = fp.read(132)
    fp.seek(0)
    return len(head) == 132 and head[128:132] == b"DICM"


def _parse(fp: BinaryIO, rel: str, has_marker: bool) -> tuple[Dataset, bool]:
    """dcmread without force; forced reading is accepted only for a dataset with real DICOM structure."""
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS), False
    except InvalidDicomError:
        pass
    except _SHORT_READ_ERRORS as exc:
        raise _quarantine(rel, Reason.TRUNCATED, part="header") from exc
    except zlib.error as exc:  # deflated body; zlib's own wording says whether the stream is cut short
        if "truncated" in str(exc):
            raise _quarantine(rel, Reason.TRUNCATED, part="deflated data set") from exc
        raise _quarantine(rel, Reason.UNREADABLE, error="corrupt deflated data set") from exc
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=True)
        structured = _has_structure(ds)
    except Exception:  # noqa: BLE001 - garbage that even forced parsing rejects
        structured = False
    if not structured:
        detail = "DICM marker but unreadable header" if has_marker else "no DICM marker, no DICOM structure"
        raise _quarantine(rel, Reason.NOT_DICOM, detail=detail)
    return ds, True


def _has_structure(ds: Dataset) -> bool:
    """A forced read of random bytes yields a few junk elements; real DICOM has a SOP class and modality."""
    header = Header(ds)
    return bool(_UID.match(header.text("SOPClassUID"))) and bool(header.text("Modality"))


def _transfer_syntax(ds: Dataset, meta: Header) -> str:
    syntax = meta.text("TransferSyntaxUID")
    if syntax:
        return syntax
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def _or(value: int | None, default: int | None) -> int | None:
    return default if value is None else value


def _deflated_element(path: Path, rel: str) -> PixelElement | None:
    try:
        present = deflated_has_pixels(path)
    except Exception as exc:  # noqa: BLE001 - zlib.error and friends: the stream is cut or corrupt
        raise _quarantine(rel, Reason.TRUNCATED, part="deflated data set") from exc
    return PixelElement(PIXEL_TAG, -1, -1) if present else None


def _classify(
    ds: Dataset,
    meta: Header,
    rel: str,
    secret: bytes,
    syntax: str,
    element: PixelElement | None,
    size: int,
    fp: BinaryIO,
    forced: bool,
    has_marker: bool,
) -> ImageRecord:
    header = Header(ds)
    sop_class = header.text("SOPClassUID") or meta.text("MediaStorageSOPClassUID")
    modality_raw = header.text("Modality").upper()
    modality = safe_modality(modality_raw)
    series_uid = header.text("SeriesInstanceUID")
    series_key = keyed_hash(secret, "series", series_uid) if series_uid else None

    if element is None:
        if sop_class in CT_CLASSES or "Rows" in header:
            raise _quarantine(rel, Reason.TRUNCATED, series_key, part="pixel data")
        if not sop_class and not modality_raw:
            reason = Reason.TRUNCATED if has_marker else Reason.NOT_DICOM
            raise _quarantine(rel, reason, part="header", detail="no SOP class, no modality")
        raise _quarantine(rel, Reason.NOT_IMAGE, series_key, modality=modality)
    is_ct = modality_raw == "CT" or (not modality_raw and sop_class in CT_CLASSES)
    if not is_ct:
        raise _quarantine(rel, Reason.NOT_CT, series_key, modality=modality)
    if element.tag in FLOAT_PIXEL_TAGS:
        raise _quarantine(rel, Reason.UNSUPPORTED_PIXELS, series_key, what="floating-point pixel data")
    if series_key is None:
        raise _quarantine(rel, Reason.MISSING_SERIES_UID)

    pixel = _pixel_format(header, rel, series_key, syntax, forced)
    _check_pixel_data(rel, series_key, pixel, element, size, fp, syntax)
    return _image_record(ds, header, rel, secret, series_key, pixel)


@functools.lru_cache(maxsize=64)
def has_decoder(syntax: str) -> bool:
    """Whether pydicom has a usable decoder (plugin installed) for this transfer syntax."""
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def _pixel_format(header: Header, rel: str, series_key: str, syntax: str, forced: bool) -> PixelFormat:
    samples = _or(header.integer("SamplesPerPixel"), 1)
    photometric = (header.text("PhotometricInterpretation") or "MONOCHROME2").upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _quarantine(rel, Reason.UNSUPPORTED_PIXELS, series_key, what="colour or multi-sample pixel data")
    rows, cols = header.integer("Rows"), header.integer("Columns")
    frames = _or(header.integer("NumberOfFrames"), 1)
    if not rows or not cols or not frames or rows < 1 or cols < 1 or frames < 1:
        raise _quarantine(rel, Reason.UNSUPPORTED_PIXELS, series_key, what="missing image size")
    allocated = header.integer("BitsAllocated")
    stored = _or(header.integer("BitsStored"), allocated)
    representation = _or(header.integer("PixelRepresentation"), 0)
    if allocated not in (8, 16, 32) or not stored or stored > allocated or representation not in (0, 1):
        raise _quarantine(rel, Reason.UNSUPPORTED_PIXELS, series_key, what="pixel bit layout")
    if not has_decoder(syntax):
        raise _quarantine(rel, Reason.UNDECODABLE, series_key, syntax=syntax_name(syntax), error="no installed decoder")
    return PixelFormat(
        transfer_syntax=syntax,
        syntax_name=syntax_name(syntax),
        rows=rows,
        cols=cols,
        frames=frames,
        bits_allocated=allocated,
        bits_stored=stored,
        pixel_representation=representation,
        photometric=photometric,
        little_endian=syntax != ExplicitVRBigEndian,
        forced=forced,
        padding=declared_padding(header.ds, signed=representation == 1),
        lossy=syntax in LOSSY_SYNTAXES or header.text("LossyImageCompression") == "01",
    )


def _check_pixel_data(
    rel: str, series_key: str, pixel: PixelFormat, element: PixelElement, size: int, fp: BinaryIO, syntax: str
) -> None:
    """Truncation checks that need no decoding; sets the native fast-path offset when it is safe."""
    if element.offset < 0:  # deflated: checked when decoding
        return
    if element.length is None:
        complete = encapsulated_complete(fp, element.offset, size)
        if complete is False:
            raise _quarantine(rel, Reason.TRUNCATED, series_key, part="pixel data")
        if complete is None:
            raise _quarantine(
                rel, Reason.UNDECODABLE, series_key, syntax=pixel.syntax_name, error="broken fragment items"
            )
        return
    expected = pixel.rows * pixel.cols * pixel.frames * pixel.bits_allocated // 8
    if element.offset + element.length > size or element.length < expected:
        raise _quarantine(rel, Reason.TRUNCATED, series_key, part="pixel data")
    if syntax in NATIVE_SYNTAXES:
        pixel.native_offset = element.offset


def _image_record(
    ds: Dataset, header: Header, rel: str, secret: bytes, series_key: str, pixel: PixelFormat
) -> ImageRecord:
    attrs = frame_attributes(ds, pixel.frames)
    if any(o is None for o in attrs.orientations):
        raise _quarantine(rel, Reason.MISSING_GEOMETRY, series_key, what="image orientation")
    orientation = attrs.orientations[0]
    if not geometry.is_valid_orientation(orientation):
        raise _quarantine(rel, Reason.MISSING_GEOMETRY, series_key, what="image orientation")
    if any(not geometry.same_orientation(o, orientation) for o in attrs.orientations):
        raise _quarantine(rel, Reason.MIXED_ORIENTATION, series_key, context=WITHIN_FILE)
    if any(p is None for p in attrs.positions):
        raise _quarantine(rel, Reason.MISSING_GEOMETRY, series_key, what="image position")
    spacing = attrs.spacings[0]
    if spacing is None or min(spacing) <= 0:
        raise _quarantine(rel, Reason.MISSING_GEOMETRY, series_key, what="pixel spacing")
    if any(s != spacing for s in attrs.spacings):
        raise _quarantine(rel, Reason.INCONSISTENT_SHAPE, series_key, what="pixel spacing", context=WITHIN_FILE)
    thickness = attrs.thicknesses[0]
    return ImageRecord(
        path=rel,
        series_key=series_key,
        patient_key=_patient_key(header, secret),
        modality="CT",
        pixel=pixel,
        orientation=tuple(orientation),  # type: ignore[arg-type]
        pixel_spacing=(spacing[0], spacing[1]),
        slice_thickness=thickness if thickness and thickness > 0 else None,
        positions=tuple(attrs.positions),  # type: ignore[arg-type]
        slopes=tuple(attrs.slopes),
        intercepts=tuple(attrs.intercepts),
        is_multiframe=pixel.frames > 1 or ds.get_item(PER_FRAME_GROUPS) is not None,
    )


def _patient_key(header: Header, secret: bytes) -> str:
    """PatientID qualified by its issuer (IDs are only unique per issuer); else a study-derived key."""
    patient_id = header.text("PatientID")
    if patient_id:
        return keyed_hash(secret, "patient", f"id\x1f{header.text('IssuerOfPatientID')}\x1f{patient_id}")
    study = header.text("StudyInstanceUID")
    if study:
        return keyed_hash(secret, "patient", f"study\x1f{study}")
    return keyed_hash(secret, "patient", f"series\x1f{header.text('SeriesInstanceUID')}")


@dataclass(slots=True)
class HeaderChunk:
    """A batch of files for one worker call: batching amortises the inter-process round trip."""

    input_dir: str
    paths: list[str]
    secret: bytes


def read_headers(chunk: HeaderChunk) -> list[FileOutcome | ImageRecord]:
    root = Path(chunk.input_dir)
    return [read_header(root, rel, chunk.secret) for rel in chunk.paths]
