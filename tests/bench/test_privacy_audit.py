"""bench/privacy_audit.py finds a project's files where the pipeline writes them: params.yaml through the typed
config (cssl_core.config) and every data/ path through cssl_core.layout, under --root.

Cheap on purpose: no demo run and no attack, only the bench's front (argument parsing, the schedule, its refusals)
and the attacker side's reading of windowed slices and splits laid out under a temporary root."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from bench import privacy_audit as bench
from cssl_core import layout
from cssl_core.config.continual import StageConfig
from tests.helpers import ATTACKER, tiny_params


@pytest.fixture
def root(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return tmp_path


def _write_windowed(root, cohort: str, window: str, n: int) -> None:
    directory = root / layout.windowed_dir(cohort, window)
    directory.mkdir(parents=True)
    np.save(directory / "slices.npy", np.full((n, 8, 8), 128, np.uint8))
    pd.DataFrame({"patient_key": [f"p{i}" for i in range(n)]}).to_parquet(directory / "index.parquet")
    (directory / "meta.json").write_text(json.dumps({"cohort": cohort}))


def test_the_schedule_is_the_typed_config(root):
    stages = bench._stages(root)
    assert all(isinstance(stage, StageConfig) for stage in stages.values())
    assert [(s.name, s.cohort, s.window) for s in stages.values()] == [
        ("s1", "phantom_a", "mediastinal"),
        ("s2", "phantom_b", "lung"),
    ]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: (root / "params.yaml").unlink(), "{root}/params.yaml not found: --root must be a cssl project"),
        (None, "{root}/data/buffers/s2 is not a replay buffer: run export@s2"),
        (
            lambda root: (root / "params.yaml").write_text(
                (root / "params.yaml").read_text().replace("cohort: phantom_b", "cohort: nowhere")
            ),
            "continual.stages.s2.cohort",
        ),
    ],
    ids=["no-params", "no-buffer", "bad-params"],
)
def test_missing_run_outputs_and_bad_params_are_one_line(root, capsys, setup, expected):
    if setup:
        setup(root)
    assert bench.main(["--root", str(root), "--buffer", "s2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("privacy_audit: ")
    assert expected.format(root=root) in err


def test_the_attacker_reads_unseen_cohorts_and_held_out_rows_from_the_layout(root):
    stages = bench._stages(root)
    _write_windowed(root, ATTACKER, "lung", 3)  # in no stage: the attacker's own patients
    _write_windowed(root, "phantom_a", "mediastinal", 5)  # s1's cohort: only its held-out rows are the attacker's
    split = root / layout.model_dir("s1") / layout.SPLIT_FILE
    split.parent.mkdir(parents=True)
    split.write_text(json.dumps({"train_rows": [0, 1, 2], "val_rows": [3, 4]}))

    slices, labels, used = bench._attacker(root, stages, "both", [])
    assert used == {f"{ATTACKER}-lung": 3, "s1-heldout": 2} and labels == {}
    assert slices.shape == (5, 8, 8) and slices.dtype == np.float32
    assert bench._attacker(root, stages, "val", [])[2] == {"s1-heldout": 2}
    (root / layout.windowed_dir(ATTACKER, "lung") / "slices.npy").unlink()
    with pytest.raises(bench.BenchError, match="no attacker slices for --attacker unseen"):
        bench._attacker(root, stages, "unseen", [])
