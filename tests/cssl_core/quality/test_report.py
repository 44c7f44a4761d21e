"""What the screen and quality reports share (cssl_core/quality/report.py): strict-JSON values and the one line
an operator reads per failure."""

from __future__ import annotations

import json

import numpy as np

from cssl_core.quality.report import failure_line, jsonable


def test_jsonable_unwraps_numpy_and_keeps_the_file_strict_json():
    value = jsonable({1: (np.int64(3), np.float32(0.5)), "bad": float("nan"), "inf": np.float64("inf"), "o": object})
    assert value["1"] == [3, 0.5] and value["bad"] == "nan" and value["inf"] == "inf"
    assert isinstance(value["o"], str)
    json.dumps(value, allow_nan=False)  # raises on any NaN left


def test_a_failure_line_names_the_rule_what_was_seen_and_the_series_files():
    failure = {
        "severity": "hard", "suite": "manifest", "expectation": "expect_column_values_to_be_between(hu_min)",
        "rule": "air present", "observed": {"unexpected_count": 1, "unexpected_percent": 50.0, "values": [12.0]},
        "unexpected_series": ["k1", None], "series_files": {"k1": "p1/ct/*.dcm (3 files)"},
    }
    assert failure_line(failure) == (
        "[hard] manifest: expect_column_values_to_be_between(hu_min): air present: 1 row(s) (50.0%), e.g. 12.0; "
        "series: k1 in p1/ct/*.dcm (3 files), <no series_key>"
    )
    assert failure_line({**failure, "observed": {"error": "boom"}, "unexpected_series": []}).endswith(
        "air present: could not evaluate: boom"
    )
