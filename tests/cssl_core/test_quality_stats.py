import json
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from cssl_core.quality_stats import (
    read_meta,
    slice_stats,
    stored_value_range,
    windowed_slice_stats,
)


def write_windowed(root, slices: np.ndarray, series_keys: list[str], dtype: str | None = None):
    """A windowed directory as the window stage writes it (docs/data-contracts.md)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "slices.npy", slices)
    index = pd.DataFrame(
        {
            "patient_key": [f"p-{k}" for k in series_keys],
            "series_key": series_keys,
            "slice_index": np.arange(len(series_keys)),
            "z_mm": np.arange(len(series_keys), dtype=float),
            "has_mask": False,
        }
    )
    index.to_parquet(root / "index.parquet", index=False)
    dtype = dtype or str(slices.dtype)
    meta = {"cohort": "c", "window": {"name": "lung"}, "dtype": dtype, "n_slices": len(slices)}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_stats_match_numpy_per_slice_across_chunk_boundaries():
    rng = np.random.default_rng(0)
    slices = rng.integers(0, 256, size=(23, 8, 8), dtype=np.uint8)
    # 3 slices per chunk: 23 = 7 full chunks + a remainder of 2
    stats = slice_stats(slices, chunk_bytes=3 * 8 * 8 * 8)
    flat = slices.reshape(23, -1).astype(np.float64)
    np.testing.assert_array_equal(stats["min"], flat.min(axis=1))
    np.testing.assert_array_equal(stats["max"], flat.max(axis=1))
    np.testing.assert_allclose(stats["mean"], flat.mean(axis=1))
    np.testing.assert_allclose(stats["std"], flat.std(axis=1))
    assert stats["finite"].all() and list(stats.columns) == ["min", "max", "mean", "std", "finite"]


def test_non_finite_values_are_flagged_and_excluded_from_the_statistics():
    slices = np.full((3, 4, 4), 0.5, dtype=np.float16)
    slices[0, 0, 0] = 0.25
    slices[1, 0, 0], slices[1, 0, 1], slices[1, 0, 2] = np.nan, np.inf, 1.5
    slices[2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN slice must not spray RuntimeWarnings into stage logs
        stats = slice_stats(slices)
    assert stats["finite"].tolist() == [True, False, False]
    assert stats.loc[1, "min"] == 0.5 and stats.loc[1, "max"] == 1.5  # the out-of-range value stays visible
    assert stats.loc[[2], ["min", "max", "mean", "std"]].isna().all(axis=None)
    assert stats.loc[0, "min"] == 0.25


def test_constant_slice_has_exactly_zero_std():
    # float64 rounding gives np.std(full(n, 0.1)) ~1e-17; "constant" must still read as 0
    slices = np.full((2, 7, 7), 0.1)
    slices[1, 0, 0] = 0.2
    stats = slice_stats(slices)
    assert np.std(np.full(49, 0.1)) != 0.0
    assert stats.loc[0, "std"] == 0.0 and stats.loc[1, "std"] > 0.0


def test_windowed_stats_join_series_keys_positionally(tmp_path):
    rng = np.random.default_rng(1)
    slices = rng.integers(0, 256, size=(5, 6, 6), dtype=np.uint8)
    slices[3] = 7
    root = write_windowed(tmp_path / "w", slices, ["a", "a", "b", "b", "b"])
    stats = windowed_slice_stats(root)
    assert stats["series_key"].tolist() == ["a", "a", "b", "b", "b"]
    assert stats["slice_index"].tolist() == [0, 1, 2, 3, 4]
    assert stats.loc[3, "std"] == 0.0 and stats.loc[3, "min"] == 7.0


def test_windowed_stats_read_the_array_in_bounded_memory(tmp_path):
    # 8 MB of uint8 (64 MB as float64): with 256 KiB chunks the peak must stay far below either
    rng = np.random.default_rng(2)
    n = 2048
    root = write_windowed(tmp_path / "big", rng.integers(0, 256, size=(n, 64, 64), dtype=np.uint8), ["s"] * n)
    tracemalloc.start()
    try:
        stats = windowed_slice_stats(root, chunk_bytes=256 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(stats) == n
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB: the array was loaded whole"


def test_index_that_does_not_match_the_array_is_an_error(tmp_path):
    slices = np.zeros((3, 4, 4), dtype=np.uint8)
    root = write_windowed(tmp_path / "w", slices, ["a", "a", "a"])
    pd.DataFrame({"series_key": ["a", "a"], "slice_index": [0, 1]}).to_parquet(root / "index.parquet")
    with pytest.raises(ValueError, match="index.parquet has 2 rows for 3 slices"):
        windowed_slice_stats(root)


def test_array_dtype_must_match_meta(tmp_path):
    root = write_windowed(tmp_path / "w", np.zeros((2, 4, 4), dtype=np.float16), ["a", "a"], dtype="uint8")
    with pytest.raises(ValueError, match="float16 but meta.json says uint8"):
        windowed_slice_stats(root)


def test_missing_window_output_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the window stage"):
        read_meta(tmp_path)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"dtype": "uint8", "stored_range": [0.0, 255.0]}, (0.0, 255.0)),
        ({"dtype": "float16", "stored_range": [0.0, 1.0]}, (0.0, 1.0)),
        ({"dtype": "uint8"}, (0.0, 255.0)),
        ({"dtype": "float16"}, (0.0, 1.0)),
        ({"dtype": "uint8", "stored_range": [10, 20]}, (10.0, 20.0)),
    ],
)
def test_stored_value_range_prefers_meta_then_dtype(meta, expected):
    assert stored_value_range(meta) == expected


def test_stored_value_range_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="stored dtype"):
        stored_value_range({"dtype": "int32"})
