"""Ingest a cohort folder of DICOM into HU volumes, a manifest and a per-file accounting.

Orchestration only: discovery, the parallel header pass, grouping into series, the parallel series pass
and the output tables. Everything is built in a staging folder inside the output and swapped in only when
complete, so a mistyped input path, a crash or a full disk never destroys a previous good output and never
leaves a partial one; the price is room for both while the new output is built (`dvc repro` deletes a
stage's outputs before running it, so there only the new output needs room).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from cssl_core import atomic_io
from cssl_core.ingest.annotations import Annotations, load_annotations
from cssl_core.ingest.discover import classify_path, walk
from cssl_core.ingest.errors import IngestInputError, IngestOutputError
from cssl_core.ingest.executor import PROCESSES, DaskRunner, make_runner
from cssl_core.ingest.header import HeaderChunk, read_headers
from cssl_core.ingest.keys import load_secret
from cssl_core.ingest.parallel import TaskRunner
from cssl_core.ingest.quiet import quiet_readers
from cssl_core.ingest.reasons import Reason
from cssl_core.ingest.records import FileOutcome, ImageRecord, SeriesResult, SeriesTask
from cssl_core.ingest.series import MASKS_DIR, VOLUMES_DIR, build_series
from cssl_core.ingest.summary import IngestSummary, summarise
from cssl_core.ingest.tables import (
    FILES_SCHEMA,
    MANIFEST_SCHEMA,
    file_rows,
    slices_schema,
    write_rows,
)

OutOfSpaceError = atomic_io.OutOfSpaceError
__all__ = ["IngestInputError", "IngestOutputError", "IngestSummary", "OutOfSpaceError", "ingest_directory"]

LOG = logging.getLogger(__name__)
STAGING_DIR = ".ingest-staging"  # this run's outputs until they are complete (see _commit)
OUTPUT_ENTRIES = {
    "manifest.parquet",
    "files.parquet",
    "slices.parquet",
    "summary.json",
    VOLUMES_DIR,
    MASKS_DIR,
    STAGING_DIR,
}
NOT_DICOM_REASONS = {Reason.NOT_DICOM, Reason.ANNOTATION, Reason.HIDDEN_FILE, Reason.DICOMDIR}
HEADER_CHUNKS_PER_WORKER = 8  # enough chunks to balance load, few enough to amortise the round trips
MAX_HEADER_CHUNK = 256
NIFTI_HEADER_BYTES = 352
TABLE_BYTES_PER_FILE = 512  # generous: a files.parquet row plus its slices.parquet rows
TABLE_BYTES_SLACK = 1_000_000


def ingest_directory(
    input_dir: Path,
    output_dir: Path,
    *,
    workers: int = 1,
    secret: bytes | None = None,
    progress: bool = True,
    compress: bool = True,
    executor: str = PROCESSES,
) -> IngestSummary:
    """Ingest every DICOM file under `input_dir` into `output_dir` (see docs/data-contracts.md).

    Raises IngestInputError (one-line message) when the input is missing or holds no DICOM at all, or
    when the output folder cannot be cleared safely, and OutOfSpaceError (one line: the output folder and
    about how much more space it needs) when the device fills up; either way the output folder is as it
    was before the run. A bad file never raises, it is accounted for.

    `executor` runs the header and series passes on the process pool (`processes`) or on Dask (`dask`,
    `dask://host:port`; see cssl_core/ingest/executor.py): the outputs are the same bytes either way.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_folders(input_dir, output_dir)
    paths = walk(input_dir)
    annotations = load_annotations(input_dir)
    secret = load_secret() if secret is None else secret
    LOG.info("ingest: %d files found, %d worker(s), executor %s", len(paths), workers, executor)
    runner = make_runner(executor, workers, progress)

    staging = output_dir / STAGING_DIR
    created = not output_dir.exists()
    tasks: list[SeriesTask] = []
    try:
        with quiet_readers(), runner:
            # workers of a Dask cluster may have another working directory: they get absolute paths
            remote = getattr(runner, "absolute_paths", False)
            task_input, task_staging = (input_dir.resolve(), staging.resolve()) if remote else (input_dir, staging)
            outcomes, images = _header_pass(runner, task_input, paths, secret)
            _require_dicom(input_dir, outcomes, images)
            tasks = _series_tasks(images, annotations, task_input, task_staging, compress)
            _prepare_staging(staging)
            results = runner.map(
                build_series,
                tasks,
                weights=[sum(len(i.positions) for i in t.images) for t in tasks],
                desc="ingest series",
                unit="slice",
            )
        _remove_partial_writes(staging)
        summary = _write_tables(staging, outcomes, results, paths, annotations.label_columns)
        _commit(staging, output_dir)
    except BaseException as exc:
        _discard(staging, output_dir if created else None)
        if atomic_io.is_out_of_space(exc):
            raise _out_of_space(output_dir, tasks, exc) from exc
        raise
    LOG.info(
        "ingest: %d series, %d slices; %d ingested, %d quarantined, %d ignored files",
        summary.n_series,
        summary.n_slices,
        summary.n_ingested,
        summary.n_quarantined,
        summary.n_ignored,
    )
    return summary


def _write_tables(
    out: Path,
    outcomes: list[FileOutcome],
    results: list[SeriesResult],
    paths: list[str],
    label_columns: tuple[str, ...],
) -> IngestSummary:
    for result in results:
        outcomes.extend(result.outcomes)
    if sorted(o.path for o in outcomes) != paths:
        raise RuntimeError("internal error: file accounting does not cover every file exactly once")
    # content order, not key order: the same data gives the same tables whatever the key secret
    kept = sorted(
        (r for r in results if r.manifest_row), key=lambda r: (r.manifest_row["content_digest"], r.series_key)
    )
    manifest = [r.manifest_row for r in kept]
    slices = [row for r in kept for row in r.slice_rows]
    write_rows(file_rows(outcomes), FILES_SCHEMA, out / "files.parquet")
    write_rows(manifest, MANIFEST_SCHEMA, out / "manifest.parquet")
    write_rows(slices, slices_schema(label_columns), out / "slices.parquet")
    summary = summarise(outcomes, manifest)
    atomic_io.write_json(out / "summary.json", _summary_json(summary))
    return summary


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Refuse a missing input or an output that is not ours (IngestInputError / IngestOutputError, one line).

    Cheap, so the stage calls it before it opens its MLflow run: a wrong path is refused in a fraction of a second,
    with no failed run left in the store.
    """
    if not input_dir.exists():
        raise IngestInputError(f"input directory does not exist: {input_dir}")
    if not input_dir.is_dir():
        raise IngestInputError(f"input is not a directory: {input_dir}")
    src, dst = input_dir.resolve(), output_dir.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise IngestOutputError(f"output {output_dir} overlaps input {input_dir}; choose a separate folder")
    if output_dir.exists():
        if not output_dir.is_dir():
            raise IngestOutputError(f"output exists and is not a directory: {output_dir}")
        foreign = [p.name for p in output_dir.iterdir() if p.name not in OUTPUT_ENTRIES]
        if foreign:
            raise IngestOutputError(
                f"refusing to clear {output_dir}: it holds {len(foreign)} entries that are not ingest outputs"
            )


def _header_pass(
    runner: TaskRunner | DaskRunner, input_dir: Path, paths: list[str], secret: bytes
) -> tuple[list[FileOutcome], list[ImageRecord]]:
    outcomes: list[FileOutcome] = []
    candidates: list[str] = []
    for rel in paths:
        decided = classify_path(rel)
        if decided is None:
            candidates.append(rel)
        else:
            outcomes.append(decided)
    size = max(1, min(MAX_HEADER_CHUNK, math.ceil(len(candidates) / (runner.workers * HEADER_CHUNKS_PER_WORKER))))
    chunks = [HeaderChunk(str(input_dir), candidates[i : i + size], secret) for i in range(0, len(candidates), size)]
    images: list[ImageRecord] = []
    for chunk in runner.map(
        read_headers, chunks, weights=[len(c.paths) for c in chunks], desc="ingest headers", unit="file"
    ):
        for record in chunk:
            (images if isinstance(record, ImageRecord) else outcomes).append(record)
    return outcomes, images


def _require_dicom(input_dir: Path, outcomes: list[FileOutcome], images: list[ImageRecord]) -> None:
    """A folder without any DICOM is almost always a wrong path: stop before touching the output."""
    if images or any(o.reason not in NOT_DICOM_REASONS for o in outcomes):
        return
    counts = Counter(str(o.reason) for o in outcomes)
    found = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "no files"
    raise IngestInputError(f"no DICOM files found under {input_dir} ({found}); check the input path")


def _series_tasks(
    images: list[ImageRecord], annotations: Annotations, input_dir: Path, output_dir: Path, compress: bool
) -> list[SeriesTask]:
    by_series: dict[str, list[ImageRecord]] = defaultdict(list)
    for image in sorted(images, key=lambda r: r.path):
        by_series[image.series_key].append(image)
    tasks = []
    for key in sorted(by_series):
        members = by_series[key]
        tasks.append(
            SeriesTask(
                series_key=key,
                patient_key=members[0].patient_key,
                images=members,
                input_dir=str(input_dir),
                output_dir=str(output_dir),
                compress=compress,
                label_columns=annotations.label_columns,
                annotations={m.path: annotations.rows[m.path] for m in members if m.path in annotations.rows},
            )
        )
    return tasks


def _prepare_staging(staging: Path) -> None:
    """An empty staging folder inside the output (same file system, so the commit is renames only); a
    staging folder left by a killed run is removed first."""
    if staging.exists():
        shutil.rmtree(staging)
    (staging / VOLUMES_DIR).mkdir(parents=True)
    (staging / MASKS_DIR).mkdir()


def _remove_partial_writes(staging: Path) -> None:
    """Hidden temporary files that a killed worker left half-written (the retried series wrote its own complete
    file): none may reach the committed output, whose bytes must not depend on a crash."""
    removed = sum(atomic_io.remove_stale_temps(staging / name) for name in (VOLUMES_DIR, MASKS_DIR))
    if removed:
        LOG.info("ingest: removed %d partial file(s) left by a worker that died", removed)


def _commit(staging: Path, output_dir: Path) -> None:
    """Replace the previous outputs by the staged ones. DVC expects exactly this run's outputs, and
    `check_folders` has made sure that the folder holds nothing but an earlier ingest output.

    The old manifest goes first and the new one comes last: a swap interrupted half-way never leaves a
    manifest that describes volumes it does not belong with.
    """
    for name in ("manifest.parquet", *sorted(OUTPUT_ENTRIES - {"manifest.parquet", STAGING_DIR})):
        old = output_dir / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    for name in (VOLUMES_DIR, MASKS_DIR, "files.parquet", "slices.parquet", "summary.json", "manifest.parquet"):
        os.replace(staging / name, output_dir / name)
    staging.rmdir()
    atomic_io.sync_dir(output_dir)


def _discard(staging: Path, created_output: Path | None) -> None:
    """After a failed run: nothing staged survives; an output folder this run created goes too."""
    shutil.rmtree(staging, ignore_errors=True)
    if created_output is not None:
        try:
            created_output.rmdir()  # only when empty: never remove anything else
        except OSError:
            pass


def _out_of_space(output_dir: Path, tasks: list[SeriesTask], exc: BaseException) -> atomic_io.OutOfSpaceError:
    """One error for the whole run: how much more space the complete output needs, an upper bound
    (uncompressed volumes and masks plus the tables), against what is free now that the staged part
    has been removed. The failed write's own figure is the fallback when the estimate says it fits."""
    needed = _output_bytes(tasks) - atomic_io.free_bytes(output_dir)
    if needed <= 0:
        needed = exc.needed_bytes if isinstance(exc, atomic_io.OutOfSpaceError) else None
    return atomic_io.OutOfSpaceError(output_dir, needed)


def _output_bytes(tasks: list[SeriesTask]) -> int:
    total = TABLE_BYTES_SLACK
    for task in tasks:
        first = task.images[0].pixel
        voxels = sum(len(i.positions) for i in task.images) * first.rows * first.cols
        total += NIFTI_HEADER_BYTES + 2 * voxels + (NIFTI_HEADER_BYTES + voxels if task.annotations else 0)
        total += TABLE_BYTES_PER_FILE * len(task.images)
    return total


def _summary_json(summary: IngestSummary) -> dict:
    return {
        "files": {
            "total": summary.n_files,
            "by_status": summary.by_status,
            "by_reason": summary.by_reason,
        },
        "series": summary.n_series,
        "slices": summary.n_slices,
        "patients": summary.n_patients,
        "masks": summary.n_masks,
        "padding": {"series": summary.n_padded, "by_source": summary.by_padding},
    }
