"""Per-slice statistics of a windowed cohort, the table the quality gate's slice suite runs on.

Great Expectations validates tables, not arrays, so the windowed `slices.npy` is summarised into one
row per slice (min, max, mean, std, all-finite) keyed by the `series_key` of `index.parquet`. A failed
check can then name the series to look at, which a pixel-level check could not.

The array is opened memory-mapped and reduced in chunks of a bounded byte size, so a cohort larger than
RAM is summarised without ever being loaded whole (the float64 copy of a chunk is the only allocation).
Statistics ignore non-finite values: `finite` says whether there were any, and min/max/mean/std still
describe the rest of the slice, so one NaN does not hide an out-of-range value in the same slice.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cssl_core.windowing import stored_range

STAT_COLUMNS = ["min", "max", "mean", "std", "finite"]
DEFAULT_CHUNK_BYTES = 64 * 2**20  # of float64 working copy per chunk


def read_meta(windowed_dir: Path) -> dict[str, Any]:
    """The window stage's `meta.json`, with an error that says which stage should have written it."""
    path = windowed_dir / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the window stage for this cohort/window first")
    return json.loads(path.read_text(encoding="utf-8"))


def stored_value_range(meta: Mapping[str, Any]) -> tuple[float, float]:
    """The range stored values must lie in: meta's own `stored_range`, else the one its dtype implies.

    The recorded range wins because it is what the window stage actually promised for this directory;
    the dtype fallback keeps older meta files (without the field) checkable.
    """
    if meta.get("stored_range") is not None:
        low, high = meta["stored_range"]
        return float(low), float(high)
    return stored_range(str(meta.get("dtype", "")))


def _rows_per_chunk(slice_shape: tuple[int, ...], chunk_bytes: int) -> int:
    per_slice = max(1, int(np.prod(slice_shape, dtype=np.int64))) * 8
    return max(1, chunk_bytes // per_slice)


def _finite_chunk_stats(flat: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "min": flat.min(axis=1),
        "max": flat.max(axis=1),
        "mean": flat.mean(axis=1),
        "std": flat.std(axis=1),
        "finite": np.ones(flat.shape[0], dtype=bool),
    }


def _masked_chunk_stats(flat: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over the finite values only; an all-non-finite slice gets NaN (GX reads it as missing)."""
    finite = np.isfinite(flat)
    masked = np.where(finite, flat, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the intended answer
        return {
            "min": np.nanmin(masked, axis=1),
            "max": np.nanmax(masked, axis=1),
            "mean": np.nanmean(masked, axis=1),
            "std": np.nanstd(masked, axis=1),
            "finite": finite.all(axis=1),
        }


def _chunk_stats(chunk: np.ndarray) -> dict[str, np.ndarray]:
    flat = np.asarray(chunk, dtype=np.float64).reshape(chunk.shape[0], -1)
    if np.issubdtype(chunk.dtype, np.integer) or np.isfinite(flat).all():
        stats = _finite_chunk_stats(flat)
    else:
        stats = _masked_chunk_stats(flat)
    # float rounding can leave a constant slice with std ~1e-17; "constant" must read as exactly 0
    stats["std"] = np.where(stats["max"] == stats["min"], 0.0, stats["std"])
    return stats


def slice_stats(slices: np.ndarray, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> pd.DataFrame:
    """One row per slice of an `(N, ...)` array (a memmap is read chunk by chunk)."""
    n = int(slices.shape[0])
    columns: dict[str, np.ndarray] = {
        "min": np.empty(n),
        "max": np.empty(n),
        "mean": np.empty(n),
        "std": np.empty(n),
        "finite": np.empty(n, dtype=bool),
    }
    step = _rows_per_chunk(tuple(slices.shape[1:]), chunk_bytes)
    for start in range(0, n, step):
        stop = min(start + step, n)
        for name, values in _chunk_stats(slices[start:stop]).items():
            columns[name][start:stop] = values
    return pd.DataFrame(columns, columns=STAT_COLUMNS)


def _check_dtype(slices: np.ndarray, meta: Mapping[str, Any], path: Path) -> None:
    expected = meta.get("dtype")
    if expected is not None and np.dtype(expected) != slices.dtype:
        raise ValueError(f"{path} holds {slices.dtype} but meta.json says {expected}: re-run the window stage")


def windowed_slice_stats(windowed_dir: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> pd.DataFrame:
    """Per-slice statistics of `windowed_dir/slices.npy`, with `series_key` and `slice_index` from the index.

    A length mismatch between `slices.npy` and `index.parquet` raises instead of being reported: rows
    could no longer be attributed to series, so the directory breaks its contract rather than a gate.
    """
    path = windowed_dir / "slices.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the window stage for this cohort/window first")
    slices = np.load(path, mmap_mode="r")
    _check_dtype(slices, read_meta(windowed_dir), path)
    index = pd.read_parquet(windowed_dir / "index.parquet", columns=["series_key", "slice_index"])
    if len(index) != slices.shape[0]:
        raise ValueError(
            f"{windowed_dir}: index.parquet has {len(index)} rows for {slices.shape[0]} slices in slices.npy; "
            "re-run the window stage"
        )
    stats = slice_stats(slices, chunk_bytes=chunk_bytes)
    return pd.concat([index.reset_index(drop=True), stats], axis=1)
