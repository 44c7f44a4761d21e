"""Stage `quality@<cohort>-<window>`: the gate between windowing and training.

The series-level rules (the manifest suite) run before windowing, in `screen@<cohort>` (tasks/screen.py),
which leaves failing series out instead of blocking the cohort. What is left for this stage is the
Great Expectations suite on per-slice statistics of the windowed array (cssl_core/quality_stats.py),
with the cohort's own thresholds (cssl_core/config/quality.py). The JSON report is a DVC metric and is
written whether or not the gate passes, so that a failed `dvc repro` leaves behind the file that explains
it. Hard failures are printed one line each and then raise `QualityGateError` (one line), which the CLI
turns into a non-zero exit: DVC marks the stage failed and nothing downstream trains on bad data. Soft
failures only warn.

GX's HTML validation page is cheap to render from an ephemeral context (no data-docs site is needed,
tens of milliseconds), so one page per suite is written next to the report as
`<cohort>-<window>.<suite>.html` unless `quality.html_report` is false. They are conveniences, not DVC
outputs: the JSON is the contract. (The pages load GX's CSS/JS from public CDNs when opened; offline they
are unstyled but still readable.)

Only counts go to MLflow. Series keys are keyed pseudonyms and may appear in the report and the error,
but the tracking store gets figures and the params block only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.layout import raw_dir
from cssl_core.quality.report import HARD, SOFT, Outcome, QualityGateError, failure_line, jsonable
from cssl_core.quality.series_files import files_summary, read_files_table, series_files
from cssl_core.quality_stats import read_meta, stored_value_range, windowed_slice_stats
from tasks import tracking
from tasks.gx_expectations import SLICES_SUITE, outcomes, slice_expectations, validate, write_html

METRIC_KEYS = ("n_expectations", "n_passed", "n_hard_failed", "n_soft_failed")


def _names(meta: Mapping[str, Any], stage_name: str) -> tuple[str, str]:
    """Cohort and window as the window stage recorded them, falling back to the stage name's suffix."""
    window = meta.get("window")
    window_name = window.get("name") if isinstance(window, Mapping) else window
    fallback = stage_name.split("@", 1)[-1]
    return str(meta.get("cohort") or fallback), str(window_name or fallback)


def _failure(outcome: Outcome) -> dict[str, Any]:
    return {
        "suite": outcome.suite,
        "expectation": outcome.expectation,
        "column": outcome.column,
        "rule": outcome.rule,
        "severity": outcome.severity,
        "unexpected_series": outcome.unexpected_series,
        "observed": outcome.observed,
    }


def _suite_summary(results: list[Outcome], n_rows: int) -> dict[str, int]:
    return {"n_rows": n_rows, "n_expectations": len(results), "n_passed": sum(o.success for o in results)}


def build_report(
    cohort: str,
    window: str,
    results: dict[str, list[Outcome]],
    rows: dict[str, int],
    series: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The DVC metric: counts (what `dvc metrics show/diff` compare) and the failures, hard ones first (the file has
    sorted keys, as every stage's JSON has: cssl_core.atomic_io.write_json)."""
    flat = [o for suite in results.values() for o in suite]
    failed = [o for o in flat if not o.success]
    hard = [o for o in failed if o.severity == HARD]
    soft = [o for o in failed if o.severity == SOFT]
    report = {
        "cohort": cohort,
        "window": window,
        "passed": not hard,
        "n_expectations": len(flat),
        "n_passed": len(flat) - len(failed),
        "n_hard_failed": len(hard),
        "n_soft_failed": len(soft),
        **(series or {}),
        "suites": {name: _suite_summary(suite, rows[name]) for name, suite in results.items()},
        "failures": [_failure(o) for o in hard + soft],
    }
    return jsonable(report)


def gate_message(report: Mapping[str, Any], output_path: Path) -> str:
    """One line; the failures themselves are printed above it, one line each (see `_print_failures`)."""
    hard = [f for f in report["failures"] if f["severity"] == HARD]
    cohort = report["cohort"]
    return (
        f"quality gate failed for cohort {cohort!r}, window {report['window']!r}: {len(hard)} hard "
        f"expectation(s) failed on the windowed slices (listed above, with the series' files; report: "
        f"{output_path}); re-run the window stage if it was interrupted, else remove those files from "
        f"{raw_dir(cohort).as_posix()} or loosen quality.cohorts.{cohort} (e.g. not_constant_mostly)"
    )


def _print_failures(report: Mapping[str, Any]) -> None:
    for failure in report["failures"]:
        label = "warning" if failure["severity"] == SOFT else "failed"
        print(f"{label}: quality {report['cohort']}-{report['window']}: {failure_line(failure)}", file=sys.stderr)


def _figures(report: Mapping[str, Any], seconds: float) -> dict[str, float]:
    figures = {key: float(report[key]) for key in METRIC_KEYS}
    figures["passed"] = 1.0 if report["passed"] else 0.0
    figures["seconds"] = seconds
    return figures


def _read_inputs(windowed_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    meta = read_meta(windowed_dir)
    if meta.get("n_slices") is None:
        raise ValueError(f"{windowed_dir}/meta.json has no n_slices: re-run the window stage")
    return windowed_slice_stats(windowed_dir), meta


def _add_files(report: dict[str, Any], files_path: Path | None) -> dict[str, Any]:
    """Each failure's series with where their files are (relative to the cohort folder)."""
    if files_path is None or not report["failures"]:
        return report
    files_of = series_files(read_files_table(files_path))
    for failure in report["failures"]:
        keys = [k for k in failure["unexpected_series"] if k is not None]
        failure["series_files"] = {k: files_summary(files_of.get(k, [])) for k in keys}
    return report


def _series_counts(meta: Mapping[str, Any]) -> dict[str, Any]:
    """How many series the window stage kept and how many the screen left out (absent in older meta files)."""
    return {key: meta[key] for key in ("n_series", "n_series_excluded") if key in meta}


def run_quality(
    windowed_dir: Path,
    output_path: Path,
    config: ProjectConfig,
    stage_name: str,
    files_path: Path | None = None,
) -> dict[str, Any]:
    """Validate one windowed cohort, write the report, log to MLflow; raise QualityGateError on a hard failure.

    `files_path` (ingest's files.parquet) lets each failure name the files of its series.

    Inputs are read before the MLflow run opens, so a missing file is an ordinary error, not a failed
    quality run in the tracking store.
    """
    stats, meta = _read_inputs(windowed_dir)
    cohort, window = _names(meta, stage_name)
    settings = config.quality.settings(cohort)
    slice_rules = slice_expectations(settings, stored_value_range(meta), int(meta["n_slices"]))
    with tracking.stage_run(stage_name, settings, tags={"cssl.cohort": cohort, "cssl.window": window}):
        started = time.perf_counter()
        validations = {SLICES_SUITE: validate(SLICES_SUITE, stats, slice_rules)}
        results = {name: outcomes(name, validation) for name, validation in validations.items()}
        report = build_report(cohort, window, results, {SLICES_SUITE: len(stats)}, _series_counts(meta))
        report = _add_files(report, files_path)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(output_path, report, allow_nan=False)
        if settings["html_report"]:
            write_html(validations, output_path)
        tracking.log_metrics(_figures(report, time.perf_counter() - started))
        _print_failures(report)
        if not report["passed"]:
            raise QualityGateError(gate_message(report, output_path), report)
    return report
