"""Plain records passed between the header pass, the series workers and the table writers.

They are small, picklable and free of identifiers: raw UIDs and IDs are turned into keyed hashes in the
header pass, so nothing identifying ever crosses a process boundary or reaches an output table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cssl_core.ingest.reasons import FileStatus, Reason

Vec3 = tuple[float, float, float]


@dataclass(slots=True)
class FileOutcome:
    """One row of files.parquet."""

    path: str
    status: FileStatus
    reason: Reason
    message: str
    series_key: str | None = None


@dataclass(frozen=True, slots=True)
class DeclaredPadding:
    """Stored pixel values (inclusive range, before rescale) that a file declares as padding."""

    low: int
    high: int
    is_range: bool  # from Pixel Padding Range Limit, else a single Pixel Padding Value


@dataclass(slots=True)
class PixelFormat:
    """Everything needed to turn the file's stored bytes into an array, known from the header pass."""

    transfer_syntax: str  # UID; kept in memory only, outputs carry `syntax_name`
    syntax_name: str
    rows: int
    cols: int
    frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    little_endian: bool = True
    native_offset: int | None = None  # set when the raw bytes can be read directly (fast path)
    forced: bool = False  # the file needed dcmread(force=True)
    padding: DeclaredPadding | None = None  # see padding.py
    lossy: bool = False  # lossily compressed (by transfer syntax or Lossy Image Compression "01")


@dataclass(slots=True)
class ImageRecord:
    """A CT image file that passed every header check; one entry per frame in the per-frame tuples."""

    path: str
    series_key: str
    patient_key: str
    modality: str
    pixel: PixelFormat
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]  # DICOM order: (row spacing, column spacing)
    slice_thickness: float | None
    positions: tuple[Vec3, ...]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]
    is_multiframe: bool


@dataclass(slots=True)
class AnnotationRow:
    """Labels of one annotated DICOM file (annotations/slices.parquet)."""

    labels: dict[str, bool | None]
    mask_file: str | None
    mask_index: int


@dataclass(slots=True)
class SeriesTask:
    """Work order for one series worker."""

    series_key: str
    patient_key: str
    images: list[ImageRecord]
    input_dir: str
    output_dir: str
    compress: bool
    label_columns: tuple[str, ...] = ()
    annotations: dict[str, AnnotationRow] = field(default_factory=dict)


@dataclass(slots=True)
class SeriesResult:
    """What a series worker reports back: the files' fate and, when a volume was written, its rows."""

    series_key: str
    outcomes: list[FileOutcome]
    manifest_row: dict | None = None
    slice_rows: list[dict] = field(default_factory=list)
