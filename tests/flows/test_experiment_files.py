"""flows.experiment_files and flows.compare's read-back on a real git + DVC project (tests/flows/conftest.py):
what they return for each experiment must be what that experiment wrote, read directly from its workspace."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import yaml

from flows.compare import collect, show_experiments
from flows.experiment_files import ExperimentFiles
from tests.flows.dvc_project import SEEDS, dvc, source_buffer


def _without_lists_and_nulls(node):
    """What DVC keeps of a metrics file: it drops lists and nulls."""
    if isinstance(node, dict):
        return {k: _without_lists_and_nulls(v) for k, v in node.items() if v is not None and not isinstance(v, list)}
    return node


def _experiment_refs(root) -> dict[str, str]:
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    refs = (line.split() for line in listed.splitlines() if not line.startswith("refs/exps/exec/"))
    return {ref.rsplit("/", 1)[-1]: rev for ref, rev in refs}  # refs/exps/<baseline>/<name>


def test_show_experiments_is_what_dvc_exp_show_json_prints(dvc_experiments):
    shown = show_experiments(dvc_experiments.root)

    assert shown == json.loads(dvc(dvc_experiments.root, "exp", "show", "--json", "-A").stdout)
    runs = {run["name"]: run for baseline in shown for group in baseline["experiments"] or [] for run in group["revs"]}
    assert set(runs) == {f"e-s{seed}" for seed in SEEDS}
    for name, written in dvc_experiments.written.items():
        assert runs[name]["data"]["params"]["params.yaml"]["data"] == yaml.safe_load(written["params.yaml"])
    assert isinstance(runs["e-s3"]["data"]["timestamp"], str)  # ISO text, as the CLI's JSON has it


def test_collect_merges_each_experiments_own_metrics(dvc_experiments):
    found, revs = collect(dvc_experiments.root, ["e-s3", "e-s4", "never-ran"])

    assert found["never-ran"] is None and revs == _experiment_refs(dvc_experiments.root)
    for name, written in dvc_experiments.written.items():
        pretrain = json.loads(written["data/metrics/pretrain-s1.json"])
        expected = {
            **_without_lists_and_nulls(json.loads(written["data/summary/metrics.json"])),
            "cost": {"train_seconds": pretrain["train_seconds"]},
            "privacy": {"s1": _without_lists_and_nulls(json.loads(written["data/privacy/s1.json"]))},
            "pretrain": {"s1": pretrain},
        }
        assert found[name] == expected
    assert found["e-s3"]["recon"] != found["e-s4"]["recon"]  # each from its own commit


def test_experiment_files_read_each_experiments_commit_and_cache(dvc_experiments):
    root = dvc_experiments.root
    _, revs = collect(root, ["e-s3", "e-s4"])

    with ExperimentFiles(root, {**revs, "lost": "f" * 40}) as files:
        for name, written in dvc_experiments.written.items():
            for path, text in written.items():  # git-tracked files, and cached ones (data/buffers/...)
                assert files.text(name, path) == text, (name, path)
        # e-s3's files are no longer in the workspace: they came from its commit and the cache
        assert files.text("e-s3", "data/summary/metrics.json") != (root / "data/summary/metrics.json").read_text()
        assert files.text("e-s3", "data/metrics/no-such.csv") is None
        assert files.text("e-s3", "data/metrics") is None  # a folder is no file
        assert files.text("never-ran", "params.yaml") is None
        assert files.text("lost", "params.yaml") is None  # a commit that is gone

        for seed in SEEDS:
            buffer = files.buffer(f"e-s{seed}", "s1")
            expected = source_buffer(seed)
            assert buffer is not None and buffer.kind == "latent" and len(buffer) == len(expected)
            assert np.array_equal(buffer.data, expected.data) and list(buffer.stage) == list(expected.stage)
        assert files.buffer("e-s3", "s2") is None  # "no buffer"
        assert files.buffer("never-ran", "s1") is None
    assert files._filesystems == {}  # closed with the block
