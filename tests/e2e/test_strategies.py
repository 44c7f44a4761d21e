"""Every continual strategy through `dvc repro` of the tiny DAG: both stages train, the buffer is the strategy's.

Each strategy reproduces up to `export@s2` (both stages' training and buffers, stage 1's audit and gate, which
stage 2 waits for), not the evaluation and report after it: those read a model and a buffer whatever strategy made
them, and tests/e2e/test_compare.py runs them for finetune and latent_replay. That halves the stages each strategy
re-runs (it was the suite's second-longest module, ~780 s; now ~480 s).

A module of its own (one copy of the session's tiny pipeline, the strategies in turn on it), so that under
pytest-xdist it runs beside tests/e2e/test_dvc_pipeline.py instead of after it. The last strategy is the
pipeline's own (latent_replay), so every strategy, that one included, really re-runs both stages.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import yaml

from tests.tiny_pipeline import run_in_project as run

pytestmark = pytest.mark.slow
RAN = re.compile(r"Running stage '([^']+)'")


@pytest.fixture(scope="module")
def project(tiny_pipeline, tmp_path_factory):
    root = tiny_pipeline.copy(tmp_path_factory.mktemp("strategies") / "project")
    return {"root": root}


@pytest.mark.parametrize("strategy", ["finetune", "joint", "er", "der", "medcoss", "latent_replay"])
def test_every_strategy_runs_two_stages(project, strategy):
    root = project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ssl"]["strategy"] = strategy
    for block in params["continual"]["stages"].values():
        block.pop("train", None)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run([sys.executable, "-m", "dvc", "repro", "export@s2"], root)
    assert result.returncode == 0, result.stdout[-3000:]
    ran = set(RAN.findall(result.stdout))
    assert {"pretrain@s1", "pretrain@s2"} <= ran  # export may come from run-cache
    assert not any(name.startswith(("evaluate", "report")) for name in ran)  # only what export@s2 needs
    from cssl_core.strategies import STRATEGIES

    for stage in ("s1", "s2"):
        metrics = json.loads((root / f"data/metrics/pretrain-{stage}.json").read_text())
        assert np.isfinite(metrics["loss_total"]) and np.isfinite(metrics["loss_mae"])
    exported = json.loads((root / "data/metrics/export-s2.json").read_text())
    assert exported["kind"] == STRATEGIES[strategy].buffer_kind
    assert exported["keeps_raw_images"] == STRATEGIES[strategy].keeps_raw_images
    meta = json.loads((root / "data/buffers/s2/meta.json").read_text())
    assert meta["kind"] == STRATEGIES[strategy].buffer_kind
