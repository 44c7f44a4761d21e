"""Stage `screen@<cohort>`: the series-level quality gate, run before windowing.

One bad series (a limb scan, a cropped reconstruction, a scout) must not block a cohort, and the person
who has to act on it knows files, not series keys. So the manifest suite (tasks/gx_expectations.py) runs
here with the cohort's own thresholds (cssl_core/config/quality.py), every hard failure is attributed to its
series, and each series gets an outcome:

- `passed`: windowed; soft failures are listed as warnings.
- `excluded` (`quality.on_fail: exclude`): left out of windowing, with each failed rule, the value that
  broke it in words, the series' files relative to the cohort folder (from ingest's files.parquet), and
  what to do. The cohort goes on when at least `quality.min_series` series pass.
- `failed` (`quality.on_fail: stop`): as excluded, but the cohort stops.

Two files come out: the report `data/quality/<cohort>.screen.json` (a git-tracked DVC metric) and the
list of passed series `data/quality/<cohort>.passed.json`, the only thing the window stage reads. Keeping
the list separate means a threshold edit that changes no outcome re-runs this stage but not windowing.
Both are written (atomically) before the verdict, so a stopped cohort leaves the report that explains it;
the passed list is removed when the cohort does not pass, so no later run windows a rejected cohort.

Series keys are keyed pseudonyms and file paths are relative to the cohort folder (as files.parquet
holds them); no header value reaches the report, the log or MLflow.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cssl_core import layout
from cssl_core.atomic_io import write_json
from cssl_core.config import ProjectConfig
from cssl_core.config.quality import required_series
from cssl_core.quality.report import HARD, SOFT, Outcome, QualityGateError, failure_line, jsonable
from cssl_core.quality.series_files import files_summary, read_files_table, series_files
from tasks import tracking
from tasks.gx_expectations import (
    KEY_COLUMN,
    MANIFEST_SUITE,
    ROW_COLUMN,
    manifest_expectations,
    outcomes,
    validate,
    write_html,
)

PASSED, EXCLUDED, FAILED = "passed", "excluded", "failed"


def _value(row: Mapping[str, Any], column: str) -> Any:
    value = row.get(column)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _num(value: Any) -> str:
    return f"{float(value):g}" if isinstance(value, int | float) else repr(value)


def _bounds(settings: Mapping[str, Any], key: str) -> tuple[float, float]:
    low, high = settings[key]
    return float(low), float(high)


def _hu_min_reason(value: float, settings: Mapping[str, Any]) -> str:
    low, high = _bounds(settings, "air_hu_min")
    if value > high:
        return f"hu_min {value:g} HU: no air in the volume (expected {low:g} to {high:g}): a limb or cropped scan?"
    return f"hu_min {value:g} HU: below {low:g} HU: padding left in the volume, or a wrong rescale?"


def _hu_max_reason(value: float, settings: Mapping[str, Any]) -> str:
    low, high = _bounds(settings, "plausible_hu_max")
    if value < low:
        return f"hu_max {value:g} HU: below {low:g} HU, no bone or contrast in the volume"
    return f"hu_max {value:g} HU: above {high:g} HU: metal, or a wrong rescale?"


def _range_reason(column: str, value: float, settings: Mapping[str, Any], key: str, unit: str) -> str:
    low, high = _bounds(settings, key)
    return f"{column} {value:g}{unit} outside {low:g} to {high:g}{unit}"


def reason(outcome: Outcome, row: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """What was wrong with this series, in words, with the value that broke the rule."""
    kind, column = outcome.expectation.split("(", 1)[0], outcome.column or ""
    value = _value(row, column) if column in row else None
    if kind == "expect_column_values_to_not_be_null":
        return f"{column} is missing from the manifest: re-run ingest; if it stays missing, the headers lack it"
    if kind == "expect_column_values_to_be_unique":
        return f"{column} appears more than once in the manifest: re-run ingest"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        return f"every voxel is {_num(_value(row, 'hu_min'))} HU: a blank volume"
    if value is None:
        return f"{column}: no value ({outcome.rule})"
    if column == "modality":
        return f"modality {value}: not one of {', '.join(map(str, settings['modalities']))}"
    if column == "has_gaps":
        return ("a slice is missing (a gap in the slice positions): resampling interpolates across it; check the "
                "export or the series' files")  # fmt: skip
    if column == "spacing_uneven":
        return "uneven slice spacing: resampling evens it out; check the export if the series should be regular"
    if column == "hu_min":
        return _hu_min_reason(float(value), settings)
    if column == "hu_max":
        return _hu_max_reason(float(value), settings)
    if column in ("spacing_x", "spacing_y"):
        return _range_reason(column, float(value), settings, "spacing_xy_mm", " mm")
    if column == "spacing_z":
        return _range_reason(column, float(value), settings, "spacing_z_mm", " mm")
    if column == "n_slices" and outcome.severity == SOFT:
        return (
            f"only {value:g} slices (fewer than {float(settings['min_slices_soft']):g}): a scout or a partial series?"
        )
    if column == "n_slices":
        return _range_reason(column, float(value), settings, "n_slices", " slices")
    return f"{column} {_num(value)}: {outcome.rule}"


def _action(outcome: str, params_hit: Sequence[str], cohort: str, raw_dir: str) -> str:
    loosen = " or ".join(f"quality.cohorts.{cohort}.{p}" for p in params_hit)
    if outcome == FAILED:
        fix = f"remove its files from {raw_dir}" + (f", loosen {loosen}" if loosen else "")
        return f"{fix}, or set quality.cohorts.{cohort}.on_fail: exclude to go on without it"
    keep = f"to keep it, loosen {loosen}; " if loosen else ""
    return f"left out of windowing; {keep}to drop it for good, remove its files from {raw_dir}"


def _failure_entry(outcome: Outcome, row: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    column = outcome.column or ""
    observed = {c: _value(row, c) for c in column.split(", ") if c in row} if column else None
    return {
        "expectation": outcome.expectation,
        "severity": outcome.severity,
        "rule": outcome.rule,
        "param": outcome.param,
        "observed": observed,
        "reason": reason(outcome, row, settings),
    }


def series_outcomes(
    manifest: pd.DataFrame,
    results: Sequence[Outcome],
    files: pd.DataFrame,
    settings: Mapping[str, Any],
    cohort: str,
    raw_dir: str,
) -> list[dict[str, Any]]:
    """One entry per manifest row, in manifest order: outcome, failures, and files and action if rejected."""
    by_row: dict[int, list[Outcome]] = {}
    for outcome in results:
        for row in outcome.unexpected_rows:
            by_row.setdefault(row, []).append(outcome)
    files_of = series_files(files)
    rejected = EXCLUDED if settings["on_fail"] == "exclude" else FAILED
    entries = []
    for row in manifest.to_dict("records"):
        failed = by_row.get(int(row[ROW_COLUMN]), [])
        hard = [o for o in failed if o.severity == HARD]
        key = _value(row, KEY_COLUMN)
        entry: dict[str, Any] = {KEY_COLUMN: None if key is None else str(key), "outcome": rejected if hard else PASSED}
        if failed:
            entry["failures"] = [_failure_entry(o, row, settings) for o in hard + [o for o in failed if o not in hard]]
        if hard:
            paths = files_of.get(str(key), []) if key is not None else []
            params_hit = sorted({o.param for o in hard if o.param})
            entry.update(files=paths, n_files=len(paths), action=_action(rejected, params_hit, cohort, raw_dir))
        entries.append(entry)
    return entries


def _verdict(
    entries: Sequence[Mapping[str, Any]], table_failures: Sequence[Outcome], settings: Mapping[str, Any]
) -> dict[str, Any]:
    counts = {kind: sum(e["outcome"] == kind for e in entries) for kind in (PASSED, EXCLUDED, FAILED)}
    required = required_series(settings["min_series"], len(entries))
    passed = not table_failures and counts[FAILED] == 0 and counts[PASSED] >= required
    return {
        "passed": passed,
        "n_series": len(entries),
        "n_passed": counts[PASSED],
        "n_excluded": counts[EXCLUDED],
        "n_failed": counts[FAILED],
        "required": required,
    }


def build_report(
    cohort: str,
    entries: Sequence[Mapping[str, Any]],
    results: Sequence[Outcome],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The DVC metric: the verdict, counts and every series' outcome (written with sorted keys, as every stage's
    JSON is: cssl_core.atomic_io.write_json)."""
    table_failures = [o for o in results if not o.success and o.severity == HARD and not o.unexpected_rows]
    failed = [o for o in results if not o.success]
    report = {
        "cohort": cohort,
        **_verdict(entries, table_failures, settings),
        "on_fail": settings["on_fail"],
        "min_series": settings["min_series"],
        "n_expectations": len(results),
        "n_hard_failed": sum(o.severity == HARD for o in failed),
        "n_soft_failed": sum(o.severity == SOFT for o in failed),
        "cohort_failures": [
            {"expectation": o.expectation, "rule": o.rule, "severity": o.severity, "suite": o.suite,
             "unexpected_series": [], "observed": o.observed}
            for o in table_failures
        ],
        "series": list(entries),
    }
    return jsonable(report)


def warning_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per rejected series (reasons, files, action), then one per soft warning of a passed series."""
    lines = []
    prefix = f"warning: screen {report['cohort']}:"
    for entry in report["series"]:
        if entry["outcome"] == PASSED:
            continue
        reasons = "; ".join(f["reason"] for f in entry["failures"] if f["severity"] == HARD)
        files = files_summary(entry["files"])
        key = entry[KEY_COLUMN] or "<no series_key>"
        lines.append(f"{prefix} series {key} {entry['outcome']}: {reasons}; files: {files}; {entry['action']}")
    for entry in report["series"]:
        if entry["outcome"] == PASSED and entry.get("failures"):
            reasons = "; ".join(f["reason"] for f in entry["failures"])
            lines.append(f"{prefix} series {entry[KEY_COLUMN]} (kept): {reasons}")
    return lines


def gate_message(report: Mapping[str, Any], output_path: Path, raw_dir: str) -> str:
    """One line: which cohort, how many series passed against what, where the details are, what to do."""
    cohort = report["cohort"]
    where = f"report: {output_path}"
    if report["cohort_failures"]:
        first = report["cohort_failures"][0]
        return f"quality screen failed for cohort {cohort!r}: {failure_line(first)} ({where})"
    if report["n_failed"]:
        return (
            f"quality screen stopped cohort {cohort!r} (on_fail: stop): {report['n_failed']} of "
            f"{report['n_series']} series failed a hard expectation (listed above; {where}); remove their files "
            f"from {raw_dir}, loosen quality.cohorts.{cohort}, or set quality.cohorts.{cohort}.on_fail: exclude"
        )
    return (
        f"quality screen failed for cohort {cohort!r}: {report['n_passed']} of {report['n_series']} series passed, "
        f"fewer than the {report['required']} that min_series {report['min_series']} requires (excluded series "
        f"listed above; {where}); fix or remove their files in {raw_dir}, loosen quality.cohorts.{cohort}, "
        f"or lower quality.cohorts.{cohort}.min_series"
    )


def _read_inputs(interim_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest_path = interim_dir / "manifest.parquet"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found: run the ingest stage for this cohort first")
    files = read_files_table(interim_dir / "files.parquet")
    manifest = pd.read_parquet(manifest_path).reset_index(drop=True)
    manifest[ROW_COLUMN] = range(len(manifest))
    return manifest, files


def _figures(report: Mapping[str, Any], seconds: float) -> dict[str, float]:
    figures = {k: float(report[k]) for k in ("n_series", "n_passed", "n_excluded", "n_failed", "required")}
    figures.update(passed=1.0 if report["passed"] else 0.0, seconds=seconds)
    return figures


def passed_series(report: Mapping[str, Any]) -> list[str]:
    return sorted(e[KEY_COLUMN] for e in report["series"] if e["outcome"] == PASSED)


def run_screen(
    interim_dir: Path, quality_dir: Path, config: ProjectConfig, cohort: str, raw_dir: str | None = None
) -> dict[str, Any]:
    """Screen one cohort's series, write the report and the passed list, log counts to MLflow.

    Raises QualityGateError (one line) when the cohort cannot go on; the report is on disk by then.
    """
    settings = config.quality.settings(cohort)
    raw_label = raw_dir or layout.raw_dir(cohort).as_posix()
    manifest, files = _read_inputs(interim_dir)
    rules = manifest_expectations(settings)
    output, selection = layout.screen_report(cohort, quality_dir), layout.passed_list(cohort, quality_dir)
    with tracking.stage_run(f"screen@{cohort}", settings, tags={"cssl.cohort": cohort}):
        started = time.perf_counter()
        validation = validate(MANIFEST_SUITE, manifest, rules, row_column=ROW_COLUMN)
        results = outcomes(MANIFEST_SUITE, validation)
        entries = series_outcomes(manifest, results, files, settings, cohort, raw_label)
        report = build_report(cohort, entries, results, settings)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, report, allow_nan=False)
        if settings["html_report"]:
            write_html({MANIFEST_SUITE: validation}, output)
        if report["passed"]:
            write_json(selection, {"cohort": cohort, "series": passed_series(report)}, allow_nan=False)
        elif selection.exists():
            os.remove(selection)
        tracking.log_metrics(_figures(report, time.perf_counter() - started))
        for line in warning_lines(report):
            print(line, file=sys.stderr)
        if not report["passed"]:
            raise QualityGateError(gate_message(report, output, raw_label), report)
    return report
