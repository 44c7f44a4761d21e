"""Atomic writes: all or nothing, a previous file survives any failure, a full disk is one clear line."""

from __future__ import annotations

import errno
import json
import pickle
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cssl_core import atomic_io
from cssl_core.atomic_io import OutOfSpaceError, ShortWriteError
from tests.tiny_disk import listing_snippet, listings, run_on_tiny_disk


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if atomic_io.is_temp_name(p.name))


def test_write_bytes_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    atomic_io.write_bytes(target, b"old")
    atomic_io.write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_failing_writer_keeps_previous_file_and_removes_temp(tmp_path):
    target = tmp_path / "volume.nii"
    target.write_bytes(b"previous good output")

    def half_then_crash(temp):
        temp.write_bytes(b"half")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        atomic_io.write_with(target, half_then_crash)
    assert target.read_bytes() == b"previous good output"
    assert _leftovers(tmp_path) == []


def test_short_write_that_returns_normally_is_caught(tmp_path):
    """The SimpleITK case: the writer says nothing, the file is short. The disk is not full here."""
    target = tmp_path / "x.bin"
    with pytest.raises(ShortWriteError, match="holds 4 bytes, expected 10"):
        atomic_io.write_with(target, lambda temp: temp.write_bytes(b"four"), expected_size=10)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_parquet_json_numpy_round_trip(tmp_path):
    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})
    atomic_io.write_parquet(table, tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    atomic_io.write_json(tmp_path / "s.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "s.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    atomic_io.save_numpy(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)
    assert _leftovers(tmp_path) == []


def test_json_writes_nan_as_python_does_unless_told_to_stay_strict(tmp_path):
    atomic_io.write_json(tmp_path / "n.json", {"x": float("nan")})
    assert (tmp_path / "n.json").read_text() == '{\n  "x": NaN\n}\n'
    with pytest.raises(ValueError):
        atomic_io.write_json(tmp_path / "strict.json", {"x": float("inf")}, allow_nan=False)
    assert not (tmp_path / "strict.json").exists() and _leftovers(tmp_path) == []


def test_parquet_bytes_equal_a_direct_write(tmp_path):
    """Encoding in memory must not change the file (DVC hashes it)."""
    table = pa.table({"k": list(range(1000)), "s": [f"row {i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "direct.parquet")
    atomic_io.write_parquet(table, tmp_path / "atomic.parquet")
    assert (tmp_path / "direct.parquet").read_bytes() == (tmp_path / "atomic.parquet").read_bytes()


def test_out_of_space_error_is_one_line_and_survives_pickling(tmp_path):
    error = OutOfSpaceError(tmp_path / "out", 12_345_678)
    text = str(error)
    assert text == (
        f"no space left on device writing to {tmp_path / 'out'} (needs ~13 MB more); "
        "free space or point the output elsewhere"
    )
    assert "\n" not in text and error.errno == errno.ENOSPC and isinstance(error, OSError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is OutOfSpaceError and str(copy) == text and copy.needed_bytes == 12_345_678
    assert "needs more space" in str(OutOfSpaceError(tmp_path))


def test_stale_temps_are_recognised_and_removed(tmp_path):
    stale = atomic_io.temp_sibling(tmp_path / "manifest.parquet")
    stale.write_bytes(b"left by a killed run")
    (tmp_path / "manifest.parquet").write_bytes(b"keep")
    (tmp_path / ".hidden").write_bytes(b"keep")
    assert stale.name.endswith(".tmp.parquet") and stale.name.startswith(".manifest.parquet.")
    assert atomic_io.remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "manifest.parquet"]


FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import numpy as np, pyarrow as pa
    from cssl_core import atomic_io
    from cssl_core.ingest.writer import VolumeGeometry, write_volume

    disk = Path(sys.argv[1])
    atomic_io.write_bytes(disk / "good.bin", b"g" * 100_000)
    rng = np.random.default_rng(0)
    big = rng.integers(-1000, 1000, (20, 100, 500)).astype(np.int16)  # 2 MB, incompressible enough
    grid = VolumeGeometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    ops = {
        "bytes_over_good": lambda: atomic_io.write_bytes(disk / "good.bin", big.tobytes()),
        "parquet": lambda: atomic_io.write_parquet(pa.table({"v": big.ravel().astype(np.int64)}), disk / "t.parquet"),
        "json": lambda: atomic_io.write_json(disk / "s.json", {"v": big.ravel()[:400_000].tolist()}),
        "numpy": lambda: atomic_io.save_numpy(disk / "a.npy", big),
        "nifti": lambda: write_volume(big, grid, disk / "v.nii", compress=False),
        "nifti_gz": lambda: write_volume(big, grid, disk / "v.nii.gz", compress=True),
    }
    for name, op in ops.items():
        free = atomic_io.free_bytes(disk)
        try:
            op()
            row = {"op": name, "error": None}
        except Exception as exc:
            row = {"op": name, "error": type(exc).__name__, "message": str(exc),
                   "needed": getattr(exc, "needed_bytes", None), "free_before": free}
        print("RESULT " + json.dumps(row))
    """
)


def test_full_disk_every_writer_fails_cleanly_and_keeps_the_previous_file(tmp_path):
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    disk = tmp_path / "disk"
    result = run_on_tiny_disk(disk, "1m", f'"$PY" {script} "$DISK" && {listing_snippet()}')
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line[len("RESULT ") :]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert [r["op"] for r in rows] == ["bytes_over_good", "parquet", "json", "numpy", "nifti", "nifti_gz"]
    for row in rows:
        assert row["error"] == "OutOfSpaceError", row
        assert row["message"].startswith(f"no space left on device writing to {disk} (needs ~")
        assert "\n" not in row["message"]
        assert row["needed"] > 0
    # the figure is what the write lacked: 2 MB of voxels against what was free
    raw = next(r for r in rows if r["op"] == "bytes_over_good")
    assert raw["needed"] == 2_000_000 - raw["free_before"]
    # nothing but the previous good file, unchanged; no temp, partial or empty file
    (listing,) = listings(result.stdout)
    assert list(listing) == ["good.bin"] and listing["good.bin"][0] == 100_000
    # niftilib's own "NWAD: wrote only ..." line is held back: the error says it once
    assert "NWAD" not in result.stderr and "wrote only" not in result.stderr
