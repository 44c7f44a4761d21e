"""Stage `ingest@<cohort>`: DICOM folder -> HU volumes, manifest and per-file accounting."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks import tracking


def run_ingest(
    input_dir: Path,
    output_dir: Path,
    workers: int,
    compress: bool,
    stage_name: str | None = None,
    executor: str = "processes",
) -> dict[str, Any]:
    """Ingest one cohort under an MLflow stage run; `executor` (processes | dask | dask://host:port) only says where
    the series are converted, never what comes out."""
    from cssl_core.ingest.keys import load_secret
    from cssl_core.ingest.pipeline import check_folders, ingest_directory

    check_folders(input_dir, output_dir)  # before MLflow is even imported: a wrong path costs no run
    cohort = input_dir.resolve().name
    stage = stage_name or f"ingest@{cohort}"
    logged = {"workers": workers, "compress": compress, "executor": executor}
    with tracking.stage_run(stage, logged, tags={"cssl.cohort": cohort}):
        summary = ingest_directory(
            input_dir, output_dir, workers=workers, secret=load_secret(), compress=compress, executor=executor
        )
        figures = {k: v for k, v in asdict(summary).items() if isinstance(v, int | float) and not isinstance(v, bool)}
        tracking.log_metrics(figures)
        if (output_dir / "summary.json").exists():
            tracking.log_artifact(output_dir / "summary.json")
    return asdict(summary)
