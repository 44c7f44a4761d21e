"""Timings of a run come from the per-stage run records (data/metrics), not from the report summary."""

from __future__ import annotations

import pytest

from cssl_core.reporting.tree import timings_from_metrics


def test_timings_sum_the_run_records_of_every_stage():
    files = {
        "data/metrics/pretrain-s1.json": {"train_seconds": 10.0, "seconds_this_run": 4.0, "steps": 20},
        "data/metrics/pretrain-s2.json": {"seconds_this_run": 5.0},  # an older record: no train_seconds yet
        "data/metrics/export-s1.json": {"seconds": 1.5, "buffer_bytes": 100},
        "data/metrics/evaluate-init.json": {"seconds": 2.0},
        "data/metrics/evaluate-s1.json": {"seconds": 3.0},
        "data/summary/metrics.json": {"cost": {"train_seconds": 999.0}},
        "data/quality/phantom_a-lung.json": {"seconds": 999.0},
        "/tmp/exp/data/metrics/export-s2.json": {"seconds": 0.5},  # absolute paths (a temp checkout) count too
    }
    assert timings_from_metrics(files) == pytest.approx(
        {"train_seconds": 15.0, "export_seconds": 2.0, "eval_seconds": 5.0}
    )


def test_no_records_no_timings():
    assert timings_from_metrics({"data/summary/metrics.json": {"steps": 3}}) == {}
    assert timings_from_metrics({"data/metrics/evaluate-s1.json": {"seconds": float("nan")}}) == {}
