"""Adding a cohort that no stage and no eval task uses re-runs no evaluation (new-user finding 5).

Under `dvc repro`, evaluate-init and evaluate@<stage> depend on the manifest of the windowed folders they read
(stage eval-inputs, cssl_core/evaluation/inputs.py), not on all of data/windowed: the new cohort is ingested,
screened and windowed, the manifest is re-hashed to the same bytes, and every evaluation row stays as it was.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys

import pytest

from tests.helpers import tiny_params
from tests.tiny_pipeline import run_in_project

pytestmark = pytest.mark.slow
RAN = re.compile(r"Running stage '([^']+)'")


def test_an_unused_cohort_is_windowed_without_re_running_any_evaluation(tiny_pipeline, tmp_path):
    params = tiny_params()
    params["data"]["demo"]["phantom_d"] = {**copy.deepcopy(params["data"]["demo"]["phantom_c"]), "seed": 41}
    params["ingest"]["cohorts"].append("phantom_d")
    params["quality"]["cohorts"]["phantom_d"] = {}
    root = tiny_pipeline.copy(tmp_path / "project", params)
    rows = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((root / "data/eval").glob("*.json"))}
    assert {"init.json", "s1.json", "s2.json", "inputs.json"} <= set(rows)

    done = run_in_project([sys.executable, "-m", "dvc", "repro"], root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = RAN.findall(done.stdout)
    assert {"ingest@phantom_d", "window@phantom_d-lung", "eval-inputs"} <= set(ran), ran
    assert not [stage for stage in ran if stage.startswith(("evaluate", "pretrain", "report"))], ran
    after = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((root / "data/eval").glob("*.json"))}
    assert after == rows  # the manifest re-hashed to the same bytes: what evaluation reads did not change
