"""What the two quality gates (screen@<cohort>, tasks/screen.py; quality@<cohort>-<window>, tasks/quality.py)
share about their reports: the severities, the plain result of one rule (`Outcome`), the error that stops a cohort,
strict-JSON values and the one-line reading of a failure.

Nothing here imports Great Expectations: the suites, their validation and GX's HTML pages are the adapter's
(tasks/gx_expectations.py), which turns each GX result into an `Outcome` at once. So the library holds the gates'
vocabulary and reporting, and no validation framework (tests/test_layers.py).

Both gates report the same way so that an operator reads one format, and the CLI (flows/errors.py) turns the one
error class into an `error:` line whichever gate raised it. The JSON reports themselves are written through
cssl_core.atomic_io.write_json (allow_nan=False: `jsonable` has already turned non-finite floats into strings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HARD = "hard"  # a failed hard rule excludes a series or stops the cohort
SOFT = "soft"  # a failed soft rule only warns
MAX_SERIES = 20  # offending series keys kept per failure: enough to act on, short enough to read


@dataclass(frozen=True)
class Outcome:
    """One evaluated expectation, reduced to plain values the report and the error message need."""

    suite: str
    expectation: str  # "<expectation type>(<column>)", or the bare type for table-level ones
    column: str | None
    rule: str
    severity: str
    success: bool
    unexpected_series: list[str | None] = field(default_factory=list)
    observed: Any = None
    param: str | None = None  # the `quality` key that sets this rule's threshold
    unexpected_rows: list[int] = field(default_factory=list)  # every offending row, when validated by row


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
