"""Probe results shared between a comparison's experiments: computed once per key, read whole or recomputed."""

from __future__ import annotations

import json

from cssl_core.evaluation.shared import probe_key, shared_result, task_digests


def _counted(result):
    calls = []

    def compute():
        calls.append(1)
        return result

    return compute, calls


def test_without_a_share_every_call_computes(tmp_path):
    compute, calls = _counted({"linear": {"t": {"1.0": {"auc": 0.7}}}})
    assert shared_result(None, "k", compute) == shared_result(None, "k", compute)
    assert len(calls) == 2 and not list(tmp_path.iterdir())


def test_the_second_experiment_reads_what_the_first_computed(tmp_path):
    row = {"linear": {"t": {"1.0": {"auc": 0.7, "f1": float("nan")}}}, "knn": {}}
    compute, calls = _counted(row)
    said = []
    first = shared_result(tmp_path, "k1", compute, say=said.append)
    second = shared_result(tmp_path, "k1", compute, say=said.append)
    assert len(calls) == 1 and len(said) == 1 and "k1.json" in said[0]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)  # nan survives the round trip
    other = shared_result(tmp_path, "k2", compute)  # another key is computed
    assert len(calls) == 2 and other == row


def test_an_unreadable_entry_is_computed_again_and_replaced(tmp_path):
    (tmp_path / "k.json").write_text('{"linear": ')  # what no writer leaves (atomic), but a disk can
    compute, calls = _counted({"linear": {}})
    assert shared_result(tmp_path, "k", compute) == {"linear": {}} and len(calls) == 1
    assert json.loads((tmp_path / "k.json").read_text()) == {"linear": {}}


def test_the_key_changes_with_every_input(tmp_path):
    task = tmp_path / "w"
    task.mkdir()
    (task / "index.parquet").write_bytes(b"index")
    (task / "slices.npy").write_bytes(b"slices")
    tasks = task_digests({"ggo": task})
    assert set(tasks["ggo"]) == {"index.parquet", "slices.npy"}
    base = probe_key("enc", {"seed": 0}, tasks, False)
    assert base == probe_key("enc", {"seed": 0}, tasks, False)
    (task / "slices.npy").write_bytes(b"slicez")
    changed = {
        probe_key("enc2", {"seed": 0}, tasks, False),
        probe_key("enc", {"seed": 1}, tasks, False),
        probe_key("enc", {"seed": 0}, tasks, True),
        probe_key("enc", {"seed": 0}, task_digests({"ggo": task}), False),
    }
    assert base not in changed and len(changed) == 4
