"""Stage `window@<cohort>-<window>`: ingested HU volumes -> training-ready 2-D slices of one window.

Reads `data/interim/<cohort>` (manifest, slices table, volumes, masks) and the list of series that passed
the screen (`data/quality/<cohort>.passed.json`, stage `screen@<cohort>`), writes
`data/windowed/<cohort>-<window>` as described in docs/data-contracts.md: a memory-mappable
`slices.npy`, `masks.npy` when the cohort is annotated, `index.parquet` and `meta.json`.

The directory is built under a temporary sibling (`<name>.partial`) and renamed into place at the end, so
an interrupted run never leaves a directory that looks complete: either the old one, the new one, or none.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from cssl_core.atomic_io import is_out_of_space, out_of_space, write_json
from cssl_core.config import ProjectConfig
from cssl_core.resample import resize_hu, resize_mask
from cssl_core.windowing import ApplyWindow, Window, stored_range
from tasks import tracking

INDEX_COLUMNS = ["patient_key", "series_key", "slice_index", "z_mm"]


def _read_volume(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def read_passed(path: Path, cohort: str) -> list[str]:
    """The series keys `screen@<cohort>` let through."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the screen stage first (`cssl screen --cohort {cohort}`)")
    selection = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(selection, dict) or selection.get("cohort") != cohort or "series" not in selection:
        raise ValueError(f"{path} is not the passed-series list of cohort {cohort!r}: re-run `cssl screen`")
    return [str(key) for key in selection["series"]]


def _selected(manifest: pd.DataFrame, series: Collection[str] | None, interim_dir: Path) -> pd.DataFrame:
    if series is None:
        return manifest
    unknown = sorted(set(series) - set(manifest["series_key"]))
    if unknown:
        raise ValueError(
            f"the passed-series list names {len(unknown)} series that {interim_dir}/manifest.parquet does not hold "
            f"(e.g. {unknown[0]}): it is out of date, re-run the screen stage"
        )
    return manifest[manifest["series_key"].isin(set(series))]


def _publish(partial: Path, output_dir: Path) -> None:
    """Swap the finished directory in: old one aside, new one in (one rename), old one removed."""
    old = output_dir.with_name(output_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(partial, output_dir)
    if old.exists():
        shutil.rmtree(old)


def window_cohort(
    interim_dir: Path,
    output_dir: Path,
    window: Window,
    size: int,
    dtype: str,
    cohort: str,
    series: Collection[str] | None = None,
) -> dict[str, Any]:
    """Write the windowed slices of the cohort's series (`series`: those keys only; None: all); returns meta."""
    ingested = pd.read_parquet(interim_dir / "manifest.parquet").sort_values(
        ["content_digest", "series_key"], kind="stable"
    )
    slice_table = pd.read_parquet(interim_dir / "slices.parquet")
    if ingested.empty:
        raise ValueError(
            f"{interim_dir}/manifest.parquet lists no series: nothing to window (check ingest's files.parquet)"
        )
    manifest = _selected(ingested, series, interim_dir)
    if manifest.empty:
        raise ValueError(f"no series of cohort {cohort!r} passed the screen: nothing to window")
    partial = output_dir.with_name(output_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    needed = _output_bytes(manifest, size, dtype)
    try:
        meta = _write_windowed(interim_dir, partial, manifest, slice_table, window, size, dtype)
        meta = {"cohort": cohort, **meta, "n_series_excluded": int(len(ingested) - len(manifest))}
        write_json(partial / "meta.json", meta)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and is_out_of_space(exc):  # one line naming the folder and the space needed
            raise out_of_space(partial.parent, needed) from exc
        raise
    _publish(partial, output_dir)
    return meta


def _output_bytes(manifest: pd.DataFrame, size: int, dtype: str) -> int:
    """About what the windowed directory takes: the slices, the masks if any series has one, 1 % for the rest."""
    per_slice = size * size * (1 if dtype == "uint8" else 2)
    masks = size * size if bool(manifest["mask_path"].notna().any()) else 0
    return int(int(manifest["n_slices"].sum()) * (per_slice + masks) * 1.01)


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped output's blocks before writing through the mapping: on a full disk a write into a
    sparse mapped file kills the process with SIGBUS ("Bus error", exit 135, nothing else said), where
    fallocate fails with ENOSPC, which becomes the one-line out-of-space error."""
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as error:
            if is_out_of_space(error):
                raise
            # a file system without fallocate: nothing to reserve with; the write itself is all that is left


def _write_windowed(
    interim_dir: Path,
    output_dir: Path,
    manifest: pd.DataFrame,
    slice_table: pd.DataFrame,
    window: Window,
    size: int,
    dtype: str,
) -> dict[str, Any]:
    """slices.npy, masks.npy and index.parquet of `manifest`'s series into output_dir; returns meta (no cohort)."""
    n_total = int(manifest["n_slices"].sum())
    has_masks = bool(manifest["mask_path"].notna().any())
    np_dtype = np.uint8 if dtype == "uint8" else np.float16
    slices_out = np.lib.format.open_memmap(
        output_dir / "slices.npy", mode="w+", dtype=np_dtype, shape=(n_total, size, size)
    )
    _reserve(output_dir / "slices.npy")
    masks_out = (
        np.lib.format.open_memmap(output_dir / "masks.npy", mode="w+", dtype=np.uint8, shape=(n_total, size, size))
        if has_masks
        else None
    )
    if masks_out is not None:
        _reserve(output_dir / "masks.npy")
    to_stored = ApplyWindow(window, dtype)
    index_parts = []
    cursor = 0
    for series in manifest.itertuples(index=False):
        hu = _read_volume(interim_dir / series.volume_path)
        count = hu.shape[0]
        if count != series.n_slices:
            raise ValueError(f"series {series.series_key}: volume has {count} slices, manifest says {series.n_slices}")
        slices_out[cursor : cursor + count] = to_stored(resize_hu(hu, size))
        if masks_out is not None:
            if isinstance(series.mask_path, str):
                masks_out[cursor : cursor + count] = resize_mask(_read_volume(interim_dir / series.mask_path), size)
            else:
                masks_out[cursor : cursor + count] = 0
        rows = slice_table[slice_table["series_key"] == series.series_key].sort_values("slice_index")
        if len(rows) != count:
            raise ValueError(f"series {series.series_key}: slices.parquet has {len(rows)} rows for {count} slices")
        index_parts.append(rows)
        cursor += count
    slices_out.flush()
    del slices_out
    if masks_out is not None:
        masks_out.flush()
        del masks_out

    index = pd.concat(index_parts, ignore_index=True)
    if "has_mask" not in index.columns:
        index["has_mask"] = False
    label_columns = sorted(c for c in index.columns if c.startswith("has_") and c != "has_mask")
    index = index[INDEX_COLUMNS + label_columns + ["has_mask"]]
    index.to_parquet(output_dir / "index.parquet", index=False)
    low, high = stored_range(dtype)
    return {
        "window": {"name": window.name, "width": window.width, "level": window.level},
        "dtype": dtype,
        "size": size,
        "n_slices": n_total,
        "n_series": int(len(manifest)),
        "n_patients": int(manifest["patient_key"].nunique()),
        "stored_range": [low, high],
        "has_masks": has_masks,
        "labels": {c: int(index[c].fillna(False).astype(bool).sum()) for c in label_columns},
    }


def run_window(
    interim_dir: Path,
    output_dir: Path,
    cohort: str,
    window_name: str,
    config: ProjectConfig,
    passed_path: Path | None = None,
) -> dict[str, Any]:
    """Stage entry point: window the screened series with the checked window settings, log to MLflow.

    `passed_path` is the screen's list of passed series; None windows every ingested series.
    """
    series = read_passed(passed_path, cohort) if passed_path is not None else None
    window = config.window.preset(window_name)
    size, dtype = config.window.size, config.window.dtype
    stage = f"window@{cohort}-{window_name}"
    stage_params = {"window": window_name, "width": window.width, "level": window.level, "size": size, "dtype": dtype}
    with tracking.stage_run(stage, stage_params, tags={"cssl.cohort": cohort, "cssl.window": window_name}):
        started = time.perf_counter()
        meta = window_cohort(interim_dir, output_dir, window, size, dtype, cohort, series=series)
        elapsed = time.perf_counter() - started
        figures = {
            "slices": meta["n_slices"],
            "series": meta["n_series"],
            "series_excluded": meta["n_series_excluded"],
            "seconds": elapsed,
            "slices_per_s": meta["n_slices"] / max(elapsed, 1e-9),
        }
        figures.update({f"positive.{k}": v for k, v in meta["labels"].items()})
        tracking.log_metrics(figures)
    return meta
