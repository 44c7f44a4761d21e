"""A series' mask volume and slice labels, assembled in the series' geometric order (worker side).

Kept apart from annotations.py (which reads the table with pandas in the parent) so that worker processes
start without importing pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cssl_core.ingest.records import AnnotationRow


class MaskBuilder:
    """Assembles a series' mask volume slice by slice, in the series' sorted order."""

    def __init__(self, input_dir: Path, n_slices: int, rows: int, cols: int) -> None:
        self.input_dir = Path(input_dir)
        self.volume = np.zeros((n_slices, rows, cols), dtype=np.uint8)
        self.has_mask = np.zeros(n_slices, dtype=bool)
        self._arrays: dict[str, np.ndarray | None] = {}

    def _array(self, mask_file: str) -> np.ndarray | None:
        if mask_file not in self._arrays:
            path = self.input_dir / mask_file
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception:  # noqa: BLE001 - a missing or corrupt mask only loses that mask
                array = None
            self._arrays[mask_file] = array if array is not None and array.ndim == 3 else None
        return self._arrays[mask_file]

    def place(self, index: int, row: AnnotationRow) -> str | None:
        """Copy the file's mask slice to sorted position `index`; returns a note when it is unusable."""
        if row.mask_file is None or row.mask_index < 0:
            return None
        array = self._array(row.mask_file)
        if array is None:
            return "its mask file could not be read"
        if array.shape[1:] != self.volume.shape[1:]:
            return "its mask does not match the image size"
        if row.mask_index >= array.shape[0]:
            return "its mask index is out of range"
        self.volume[index] = np.asarray(array[row.mask_index], dtype=np.uint8)
        self.has_mask[index] = True
        return None

    @property
    def any(self) -> bool:
        return bool(self.has_mask.any())


def slice_labels(label_columns: Sequence[str], row: AnnotationRow | None) -> dict[str, bool | None]:
    """Label values for one slice; None (null in parquet) where the file has no annotation."""
    if row is None:
        return {name: None for name in label_columns}
    return {name: row.labels.get(name) for name in label_columns}
