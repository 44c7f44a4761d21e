"""Output tables of an ingested cohort (docs/data-contracts.md, "Ingested cohort").

Schemas are explicit so that column types do not depend on the data (an all-null mask_path is still a
string, an empty manifest still has every column), and rows are written in a fixed order so that the
same input gives byte-identical files whatever the number of workers (DVC hashes them). Every file is
written atomically (cssl_core/atomic_io.py): a full disk leaves no partial table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from cssl_core import atomic_io
from cssl_core.ingest.records import FileOutcome

FILES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("series_key", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("patient_key", pa.string(), nullable=False),
        pa.field("content_digest", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("n_slices", pa.int64(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("cols", pa.int64(), nullable=False),
        pa.field("spacing_x", pa.float64(), nullable=False),
        pa.field("spacing_y", pa.float64(), nullable=False),
        pa.field("spacing_z", pa.float64(), nullable=False),
        pa.field("slice_thickness", pa.float64()),
        pa.field("hu_min", pa.int64(), nullable=False),
        pa.field("hu_max", pa.int64(), nullable=False),
        pa.field("padding_source", pa.string(), nullable=False),
        pa.field("padding_hu_min", pa.int64()),
        pa.field("padding_hu_max", pa.int64()),
        pa.field("padding_fraction", pa.float64(), nullable=False),
        pa.field("volume_path", pa.string(), nullable=False),
        pa.field("mask_path", pa.string()),
        pa.field("n_files", pa.int64(), nullable=False),
        pa.field("is_multiframe", pa.bool_(), nullable=False),
        pa.field("transfer_syntaxes", pa.string(), nullable=False),
        pa.field("spacing_uneven", pa.bool_(), nullable=False),
        pa.field("has_gaps", pa.bool_(), nullable=False),
    ]
)


def slices_schema(label_columns: Sequence[str]) -> pa.Schema:
    fields = [
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("patient_key", pa.string(), nullable=False),
        pa.field("slice_index", pa.int64(), nullable=False),
        pa.field("z_mm", pa.float64(), nullable=False),
    ]
    fields += [pa.field(name, pa.bool_()) for name in label_columns]  # null where unannotated
    fields.append(pa.field("has_mask", pa.bool_(), nullable=False))
    return pa.schema(fields)


def write_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema, path: Path) -> None:
    columns = {field.name: [row[field.name] for row in rows] for field in schema}
    atomic_io.write_parquet(pa.table(columns, schema=schema), path)


def file_rows(outcomes: Iterable[FileOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "path": o.path,
            "status": str(o.status),
            "series_key": o.series_key,
            "reason": str(o.reason),
            "message": o.message,
        }
        for o in sorted(outcomes, key=lambda o: o.path)
    ]


