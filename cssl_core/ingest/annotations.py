"""Optional slice annotations of a raw cohort (annotations/slices.parquet + mask .npy files).

Labels are keyed by *file path*, never by slice number: the slice order is only known after geometric
sorting, so joining by path and then placing labels at each file's sorted index is what keeps labels on
the right anatomy however the files are named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from cssl_core.ingest.errors import IngestInputError
from cssl_core.ingest.records import AnnotationRow

ANNOTATIONS_DIR = "annotations"
SLICES_TABLE = f"{ANNOTATIONS_DIR}/slices.parquet"
LABEL_PREFIX = "has_"
RESERVED_COLUMNS = {"has_mask"}  # an output column of slices.parquet, never an input label


@dataclass(slots=True)
class Annotations:
    label_columns: tuple[str, ...] = ()
    rows: dict[str, AnnotationRow] = field(default_factory=dict)


def is_annotation_path(rel: str) -> bool:
    """Everything under the cohort's top-level annotations/ folder is side-car data, not DICOM."""
    parts = PurePosixPath(rel).parts
    return len(parts) > 1 and parts[0] == ANNOTATIONS_DIR


def _normalise(rel: str) -> str:
    return PurePosixPath(str(rel).replace("\\", "/")).as_posix() if rel else ""


def _label(value: object) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "<NA>":
        return None
    return bool(value)


def load_annotations(input_dir: Path) -> Annotations:
    """Read annotations/slices.parquet when present.

    A table that exists but cannot be used stops the run: silently ingesting without the labels someone
    prepared would produce a cohort that looks unlabelled downstream.
    """
    path = Path(input_dir) / SLICES_TABLE
    if not path.is_file():
        return Annotations()
    import pandas as pd  # parent process only: keeps pandas out of worker start-up

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any parquet failure means the same for the user
        raise IngestInputError(f"{SLICES_TABLE} could not be read ({type(exc).__name__}); fix or remove it") from None
    if "file" not in frame.columns:
        raise IngestInputError(f"{SLICES_TABLE} has no 'file' column; see docs/data-contracts.md")
    labels = tuple(sorted(c for c in frame.columns if c.startswith(LABEL_PREFIX) and c not in RESERVED_COLUMNS))
    has_mask_file = "mask_file" in frame.columns
    has_mask_index = "mask_index" in frame.columns
    rows: dict[str, AnnotationRow] = {}
    for record in frame.to_dict("records"):
        mask_file = record.get("mask_file") if has_mask_file else None
        mask_file = None if mask_file is None or (isinstance(mask_file, float) and np.isnan(mask_file)) else mask_file
        index = record.get("mask_index") if has_mask_index else -1
        index = -1 if index is None or (isinstance(index, float) and np.isnan(index)) else int(index)
        rows[_normalise(record["file"])] = AnnotationRow(
            labels={name: _label(record.get(name)) for name in labels},
            mask_file=_normalise(str(mask_file)) if mask_file else None,
            mask_index=index,
        )
    return Annotations(labels, rows)
