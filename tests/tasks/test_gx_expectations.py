"""The Great Expectations adapter (tasks/gx_expectations.py) on its own: a GX validation comes back as plain
`Outcome`s (cssl_core/quality/report.py), offending series capped at MAX_SERIES, every offending row when asked.

The gates that use it are tested end to end in test_screen.py and test_quality.py; this pins what they rely on."""

from __future__ import annotations

import great_expectations.expectations as gxe
import pandas as pd

from cssl_core.quality.report import HARD, MAX_SERIES, SOFT, Outcome
from tasks.gx_expectations import KEY_COLUMN, ROW_COLUMN, _tag, outcomes, validate


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({KEY_COLUMN: [f"k{i:03d}" for i in range(n)], "v": [float(i) for i in range(n)]})


def test_a_validation_becomes_plain_outcomes_with_severity_rule_and_capped_series():
    frame = _frame(MAX_SERIES + 5)
    rules = [
        gxe.ExpectColumnValuesToBeBetween(column="v", max_value=-1.0, **_tag(HARD, "v <= -1", "v_max")),
        gxe.ExpectColumnValuesToBeBetween(column="v", min_value=0.0, **_tag(SOFT, "v >= 0")),
    ]
    results = outcomes("s", validate("s", frame, rules))
    assert all(isinstance(o, Outcome) for o in results)
    failed, ok = results
    assert (failed.severity, failed.rule, failed.param, failed.success) == (HARD, "v <= -1", "v_max", False)
    assert failed.expectation == "expect_column_values_to_be_between(v)" and failed.column == "v"
    assert failed.unexpected_series == [f"k{i:03d}" for i in range(MAX_SERIES)]
    assert failed.observed["unexpected_count"] == MAX_SERIES + 5
    assert (ok.severity, ok.success, ok.unexpected_series) == (SOFT, True, [])


def test_with_a_row_column_every_offending_row_is_listed():
    frame = _frame(MAX_SERIES + 5).assign(**{ROW_COLUMN: range(MAX_SERIES + 5)})
    rule = gxe.ExpectColumnValuesToBeBetween(column="v", min_value=3.0, **_tag(HARD, "v >= 3"))
    (result,) = outcomes("s", validate("s", frame, [rule], row_column=ROW_COLUMN))
    assert result.unexpected_rows == [0, 1, 2]
