"""What the two quality gates (screen@<cohort>, tasks/screen.py; quality@<cohort>-<window>, tasks/quality.py)
share about their reports: the error that stops a cohort, strict-JSON values, the one-line reading of a failure
and GX's HTML pages.

Both gates report the same way so that an operator reads one format, and the CLI (flows/errors.py) turns the one
error class into an `error:` line whichever gate raised it. The JSON reports themselves are written through
cssl_core.atomic_io.write_json (allow_nan=False: `jsonable` has already turned non-finite floats into strings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cssl_core.quality.expectations import MAX_SERIES, render_html


class QualityGateError(Exception):
    """A cohort cannot go on: the message is one line (what, where the report is, what to do), `report` the rest."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, and non-finite floats as strings so the file stays strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _describe_observed(observed: Any) -> str:
    if isinstance(observed, Mapping) and "error" in observed:
        return f"could not evaluate: {observed['error']}"
    if isinstance(observed, Mapping) and "unexpected_count" in observed:
        values = ", ".join(str(v) for v in observed.get("values", [])[:5])
        return f"{observed['unexpected_count']} row(s) ({observed.get('unexpected_percent', 0):.1f}%), e.g. {values}"
    return f"observed {observed}"


def _series_label(key: str | None, files: Mapping[str, str]) -> str:
    if key is None:
        return "<no series_key>"
    return f"{key} in {files[key]}" if key in files else key


def failure_line(failure: Mapping[str, Any]) -> str:
    """One readable line: where, which rule, what GX saw, which series (and their files) to look at."""
    files = failure.get("series_files") or {}
    keys = [_series_label(k, files) for k in failure["unexpected_series"]]
    series = ""
    if keys:
        more = ", ..." if len(keys) >= MAX_SERIES else ""
        series = f"; series: {', '.join(keys)}{more}"
    return (
        f"[{failure['severity']}] {failure['suite']}: {failure['expectation']}: {failure['rule']}: "
        f"{_describe_observed(failure['observed'])}{series}"
    )


def write_html(validations: Mapping[str, Any], output_path: Path) -> None:
    """GX's page per suite next to the JSON report: `<report stem>.<suite>.html`."""
    for name, validation in validations.items():
        html_path = output_path.with_name(f"{output_path.stem}.{name}.html")
        html_path.write_text(render_html(validation), encoding="utf-8")
