"""A full disk during ingestion, for real: the output folder lives on a small tmpfs (tests/tiny_disk.py).

A first, small cohort fits and is the previous good output; a second, larger one does not. The run must
end with one line naming the output folder and the space needed, leave no partial, empty or temporary
file, and leave the previous output exactly as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest

from tests.cssl_core.ingest.corpus import pycerr_root
from tests.tiny_disk import listing_snippet, listings, run_on_tiny_disk

CSSL = str(Path(sys.executable).parent / "cssl")
PROGRESS_BAR = re.compile(r"^\s*ingest (headers|series): +\d+%\|")
DISK_SIZE = "4m"  # pat_2 alone (1.6 MB of voxels) fits, all four patients (11.6 MB) do not

INGEST_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from cssl_core import atomic_io
    from cssl_core.ingest.pipeline import ingest_directory

    source, out, workers, fmt = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    try:
        ingest_directory(source, out, secret=b"k", progress=False, workers=workers, compress=fmt == "gz")
        row = {"error": None}
    except Exception as exc:
        row = {"error": type(exc).__name__, "message": str(exc), "needed": getattr(exc, "needed_bytes", None)}
    row["free_after"] = atomic_io.free_bytes(out)
    print("RESULT " + json.dumps(row))
    """
)


def _voxel_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.get("Modality") == "CT":
            total += 2 * int(ds.Rows) * int(ds.Columns)
    return total


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small") / "cohort"
    shutil.copytree(pycerr_root() / "pat_2", root / "pat_2")
    return root


def _assert_clean_failure(first: dict, after: dict, disk: Path) -> None:
    """The previous output survives byte for byte and nothing else is left on the disk."""
    assert after == first
    assert "out/manifest.parquet" in first and any(name.startswith("out/volumes/s") for name in first)
    assert all(size > 0 for size, _ in after.values())
    assert not any(".tmp" in name or ".partial" in name or "staging" in name for name in after)


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "fmt"), [(2, "gz"), (1, "nii")])
def test_ingest_on_a_full_disk_keeps_the_previous_output(tmp_path, small_cohort, workers, fmt):
    script = tmp_path / "ingest.py"
    script.write_text(INGEST_SCRIPT)
    disk = tmp_path / "disk"
    out = disk / "out"
    run = f'"$PY" {script} "{{source}}" "{out}" {workers} {fmt}'
    result = run_on_tiny_disk(
        disk,
        DISK_SIZE,
        " && ".join(
            [run.format(source=small_cohort), listing_snippet(), run.format(source=pycerr_root()), listing_snippet()]
        ),
    )
    assert result.returncode == 0, result.stderr
    good, failed = [json.loads(line[7:]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert good["error"] is None
    assert failed["error"] == "OutOfSpaceError"
    assert failed["message"].startswith(f"no space left on device writing to {out} (needs ~")
    assert failed["message"].endswith("free space or point the output elsewhere") and "\n" not in failed["message"]
    # the figure covers the whole run (an upper bound: uncompressed voxels plus tables), not just the
    # write that failed, against what is free once the staged part is gone
    full = _voxel_bytes(pycerr_root())
    assert full - failed["free_after"] <= failed["needed"] <= full - failed["free_after"] + 2_000_000
    first, after = listings(result.stdout)
    _assert_clean_failure(first, after, disk)


@pytest.mark.slow
def test_cli_ingest_full_disk_is_one_line_and_nonzero(tmp_path, small_cohort):
    disk = tmp_path / "disk"
    out = disk / "out"
    err = tmp_path / "stderr.txt"
    cli = f'"{CSSL}" ingest --input "{{source}}" --output "{out}" --volume-format nii'
    script = " && ".join(
        [
            cli.format(source=small_cohort),
            listing_snippet(),
            f'{{ {cli.format(source=pycerr_root())} 2> "{err}"; echo "EXIT $?"; }}',
            listing_snippet(),
        ]
    )
    result = run_on_tiny_disk(disk, DISK_SIZE, script)
    assert result.returncode == 0, result.stderr
    assert "EXIT 2" in result.stdout
    # stderr is not a terminal here, so tqdm's bars (erased on a terminal) stay in it: set them aside
    lines = [line for line in err.read_text().replace("\r", "\n").splitlines() if line.strip()]
    bars = [line for line in lines if PROGRESS_BAR.match(line)]
    lines = [line for line in lines if line not in bars]
    assert bars and len(lines) == 1, lines
    assert lines[0].startswith(f"error: no space left on device writing to {out} (needs ~")
    assert "Traceback" not in err.read_text() and "NWAD" not in err.read_text()
    first, after = listings(result.stdout)
    _assert_clean_failure(first, after, disk)


WINDOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from cssl_core.windowing import Window
    from tasks.window import window_cohort

    interim, out = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        window_cohort(interim, out, Window("lung", width=1500, level=-600), size=96, dtype="uint8", cohort="nsclc")
        row = {"error": None}
    except Exception as exc:
        row = {"error": type(exc).__name__, "message": str(exc), "needed": getattr(exc, "needed_bytes", None)}
    print("RESULT " + json.dumps(row))
    """
)


@pytest.mark.slow
def test_windowing_on_a_full_disk_is_one_line_not_a_bus_error(tmp_path, pycerr_ingested):
    """Windowing wrote through a memory map of a sparse file: on a full disk the process died with SIGBUS ("Bus
    error", exit 135, nothing on stderr) and left <name>.partial (second new-user trial, finding 1)."""
    import pandas as pd

    n_slices = int(pd.read_parquet(pycerr_ingested.out / "manifest.parquet")["n_slices"].sum())
    needed = n_slices * 96 * 96
    script = tmp_path / "window.py"
    script.write_text(WINDOW_SCRIPT)
    disk = tmp_path / "disk"
    size_kb = max(needed // 2048, 64)  # half of what the slices need
    command = f'"$PY" {script} "{pycerr_ingested.out}" "$DISK/out" && ls -A "$DISK"'
    result = run_on_tiny_disk(disk, f"{size_kb}k", command)
    assert result.returncode == 0, result.stderr  # not 135
    [row] = [json.loads(line[7:]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert row["error"] == "OutOfSpaceError" and "\n" not in row["message"]
    assert row["message"].startswith(f"no space left on device writing to {disk} (needs ~")
    assert row["needed"] >= needed - size_kb * 1024
    assert result.stdout.strip().splitlines()[-1].startswith("RESULT ")  # `ls -A` printed nothing: no .partial
