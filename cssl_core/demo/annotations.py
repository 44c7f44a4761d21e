"""The annotation side-car of a raw cohort (docs/data-contracts.md, "Raw cohort") and its output folder.

Both demo generators write the same layout, so it lives here once. The parquet schema is explicit so that
an all-negative label column is still bool and an empty mask column still a string, and the writer emits
identical bytes for identical inputs (DVC hashes the output).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cssl_core.atomic_io import write_json

ANNOTATIONS_DIR = "annotations"
SLICES_TABLE = f"{ANNOTATIONS_DIR}/slices.parquet"
MASKS_DIR = f"{ANNOTATIONS_DIR}/masks"
MARKER = f"{ANNOTATIONS_DIR}/demo_generator.json"


def prepare_out_dir(out_dir: Path, generator: str, settings: Mapping[str, Any]) -> None:
    """Empty out_dir (so stale files of an earlier run cannot survive) and stamp it as ours.

    Only a directory that is empty or carries our stamp is cleared: pointing the generator at a folder of
    real data by mistake must not delete it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NotADirectoryError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
            raise FileExistsError(
                f"refusing to clear {out_dir}: it is not empty and was not written by a demo generator "
                f"(no {MARKER}); remove it yourself or choose an empty directory"
            )
        shutil.rmtree(out_dir)
    (out_dir / ANNOTATIONS_DIR).mkdir(parents=True)
    stamp = {"generator": generator, "settings": dict(settings)}
    write_json(out_dir / MARKER, stamp)


def write_mask(out_dir: Path, name: str, mask: np.ndarray) -> str:
    """Save a uint8 (n, rows, cols) mask; returns its path relative to the cohort dir."""
    if mask.dtype != np.uint8 or mask.ndim != 3:
        raise ValueError(f"masks are uint8 (n, rows, cols), got {mask.dtype} {mask.shape}")
    relative = f"{MASKS_DIR}/{name}.npy"
    path = Path(out_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, mask, allow_pickle=False)
    return relative


def write_slice_table(out_dir: Path, rows: Sequence[Mapping[str, Any]], label_columns: Sequence[str]) -> Path:
    """One row per annotated DICOM file: file, has_* labels, mask_file, mask_index."""
    for name in label_columns:
        if not name.startswith("has_"):
            raise ValueError(f"label columns are named has_<finding>, got {name!r}")
    fields = [pa.field("file", pa.string(), nullable=False)]
    fields += [pa.field(name, pa.bool_(), nullable=False) for name in label_columns]
    fields += [pa.field("mask_file", pa.string()), pa.field("mask_index", pa.int64(), nullable=False)]
    schema = pa.schema(fields)
    columns = {field.name: [row[field.name] for row in rows] for field in fields}
    table = pa.table(columns, schema=schema)
    path = Path(out_dir) / SLICES_TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
