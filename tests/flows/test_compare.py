"""flows.compare: experiment metrics merged from what `dvc exp show --json` gives, and the queue's state."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.repo.experiments.queue.celery import LocalCeleryQueue
from dvc.utils.hydra import apply_overrides

import flows.compare as compare
from cssl_core.config.compare import leaf_settings, with_settings
from flows.compare import (
    _overrides,
    experiment_names,
    merge_metrics,
    queue_state,
    queue_status,
    unfinished_in,
)
from tests.flows.dvc_project import SEEDS, dvc

SUMMARY = {"stages": {"s1": 0, "s2": 1}, "recon": {"R": {"s1": {"s1": 0.7}, "s2": {"s1": 0.75, "s2": 0.6}}}}
# as `dvc exp show` gives a data/privacy/<stage>.json: its lists and nulls are dropped (labels_in_buffer, gate.reasons)
AUDIT_S1 = {
    "buffer": "s1",
    "kind": "latent",
    "audited": True,
    "passed": True,
    "figures": {"decoder_ssim_p95": 0.41, "baseline_ssim_p95": 0.35, "reid_auc": 0.55},
}
AUDIT_S2 = {
    "buffer": "s2",
    "kind": "latent",
    "audited": True,
    "passed": False,
    "figures": {"decoder_ssim_p95": 0.52, "baseline_ssim_p95": 0.36},
}
NO_BUFFER = {"buffer": "s2", "kind": "none", "audited": False, "passed": True, "note": "nothing to audit"}


def _metrics(**files: dict) -> dict:
    return {path: {"data": content} for path, content in files.items()}


def _experiment(rev: str, name: str, metrics: dict) -> dict:
    """One queued experiment as `dvc exp show --json` (DVC 3) nests it under its baseline commit."""
    run = {
        "rev": rev,
        "name": name,
        "data": {"rev": rev, "metrics": metrics, "params": {}},
        "error": None,
        "experiments": None,
    }
    return {"revs": [run], "executor": None, "name": name}


def _shown() -> list:
    latent = _metrics(
        **{
            "data/summary/metrics.json": SUMMARY,
            "data/privacy/s1.json": AUDIT_S1,
            "data/privacy/s2.json": AUDIT_S2,
            "data/metrics/pretrain-s1.json": {"val_mae": 0.31, "train_seconds": 10.0},
            "data/metrics/pretrain-s2.json": {"val_mae": 0.29, "train_seconds": 12.0},
            "data/metrics/audit-s1.json": {"seconds": 5.0},  # wall time only: neither privacy nor a timing total
            "data/quality/phantom_a-mediastinal.json": {"passed": True},
        }
    )
    latent["data/privacy/s3.json"] = {"error": {"type": "FileNotFoundError", "msg": "missing"}}  # an unreadable one
    finetune = _metrics(**{"data/summary/metrics.json": SUMMARY, "data/privacy/s2.json": NO_BUFFER})
    failed = _metrics(**{"data/privacy/s1.json": AUDIT_S1})  # audited s1, then failed before the summary
    return [
        {
            "rev": "workspace",
            "name": None,
            "data": {"rev": "workspace", "metrics": {}},
            "error": None,
            "experiments": None,
        },
        {
            "rev": "b" * 40,
            "name": "main",
            "data": {"rev": "b" * 40, "metrics": _metrics(**{"data/summary/metrics.json": {"stages": {"s1": 0}}})},
            "error": None,
            "experiments": [
                _experiment("1" * 40, "latent_replay-s0", latent),
                _experiment("2" * 40, "finetune-s0", finetune),
                _experiment("3" * 40, "finetune-s1", failed),
            ],
        },
    ]


def test_merge_metrics_gathers_privacy_reports_and_pretrain_records_per_stage():
    metrics = _shown()[1]["experiments"][0]["revs"][0]["data"]["metrics"]

    merged = merge_metrics(metrics)

    assert merged["privacy"] == {"s1": AUDIT_S1, "s2": AUDIT_S2}  # s3's read error is left out
    assert merged["pretrain"] == {
        "s1": {"val_mae": 0.31, "train_seconds": 10.0},
        "s2": {"val_mae": 0.29, "train_seconds": 12.0},
    }
    assert merged["recon"] == SUMMARY["recon"] and merged["cost"] == {"train_seconds": 22.0}
    assert "audit-s1" not in json.dumps(merged)
    # paths as DVC prints them for a project in a subfolder, or on Windows
    nested = merge_metrics(_metrics(**{"data/summary/metrics.json": SUMMARY, "sub\\data\\privacy\\s2.json": NO_BUFFER}))
    assert nested["privacy"] == {"s2": NO_BUFFER}
    assert "privacy" not in merge_metrics(_metrics(**{"data/summary/metrics.json": SUMMARY}))
    assert merge_metrics(_metrics(**{"data/privacy/s1.json": AUDIT_S1})) is None  # no summary: failed


def test_collect_merges_privacy_from_dvc_exp_show(monkeypatch, tmp_path):
    calls = []

    def fake_show(project_dir):
        calls.append(project_dir)
        return _shown()

    monkeypatch.setattr(compare, "show_experiments", fake_show)

    found, revs = compare.collect(tmp_path, ["latent_replay-s0", "finetune-s0", "finetune-s1", "never-ran"])

    assert calls == [tmp_path]
    assert found["latent_replay-s0"]["privacy"] == {"s1": AUDIT_S1, "s2": AUDIT_S2}
    assert found["latent_replay-s0"]["pretrain"]["s1"]["val_mae"] == 0.31
    assert found["finetune-s0"]["privacy"] == {"s2": NO_BUFFER} and "pretrain" not in found["finetune-s0"]
    assert found["finetune-s1"] is None and found["never-ran"] is None  # failed runs stay in, as failed
    assert revs == {"latent_replay-s0": "1" * 40, "finetune-s0": "2" * 40}


def test_queue_state_counts_waiting_experiments_and_workers():
    tasks = [{"status": status} for status in ("Success", "Running", "Queued", "Failed")]

    assert queue_state(tasks, {}) == (2, 1)  # an experiment runs: a worker is alive, whatever inspection says
    waiting = [{"status": status} for status in ("Success", "Queued", "Queued")]
    assert queue_state(waiting, {}) == (2, 0)  # queued, nothing running, no worker: one must be started
    assert queue_state(tasks, {"dvc-exp-worker-1@host": [{"id": "t"}]}) == (2, 1)  # active
    assert queue_state([], {"dvc-exp-worker-1@host": []}) == (0, 1)  # idle
    assert queue_state(tasks, None) == (2, 1)  # workers unknown: never restart one


def test_queue_status_of_a_real_queue(dvc_project, monkeypatch):
    dvc(dvc_project, "exp", "run", "--queue", "-q", "-n", "q-s5", "-S", "train.seed=5")

    assert queue_status(dvc_project) == (1, 0)  # queued, and no worker started
    assert compare.collect(dvc_project, ["q-s5"]) == ({"q-s5": None}, {})  # no metrics yet: not finished

    def broken(self):
        raise RuntimeError("broker unreadable")

    monkeypatch.setattr(LocalCeleryQueue, "worker_status", broken)
    assert queue_status(dvc_project) == (1, 1)  # workers unknown: counted as alive, so none is started
    monkeypatch.setattr(LocalCeleryQueue, "status", broken)
    assert queue_status(dvc_project) == (0, 1)  # as a failed `dvc queue status`, which printed no tasks


def test_a_run_empties_only_the_kinds_the_stages_share(tmp_path):
    from flows.compare import SHARED_KINDS, empty_share

    for kind in (*SHARED_KINDS, "someone-elses"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "entry").write_text("x")
    empty_share(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["someone-elses"]
    empty_share(tmp_path / "never-created")  # nothing to remove: no error


PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
CONFIGS = sorted(yaml.safe_load(PARAMS.read_text())["compare"]["configs"])


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_s_overrides_apply_with_dvc_s_own_parser(config, tmp_path):
    """The -S arguments go through DVC's Hydra parser onto a copy of the real params.yaml and give exactly the
    config's values (a dict once went in as JSON, which Hydra rejects, and the queue refused the whole config).
    Seeds only change the two seed keys' values, so each variant is applied once, at the config's last seed."""
    last_seed_runs = {variant: settings for _, variant, _, settings in experiment_names(
        yaml.safe_load(PARAMS.read_text()), config)}
    for name, settings in last_seed_runs.items():
        copy = tmp_path / f"{name}.yaml"
        shutil.copy(PARAMS, copy)
        arguments = _overrides(settings)
        apply_overrides(copy, arguments[1::2])
        applied = yaml.safe_load(copy.read_text())
        for key, value in leaf_settings(settings):
            assert _get(applied, key) == value, (name, key)
        # what `cssl compare` checks before queueing is what DVC will run: blocks merged leaf by leaf
        assert with_settings(yaml.safe_load(PARAMS.read_text()), settings) == applied, name


def test_a_dict_override_changes_only_the_keys_it_names(tmp_path):
    copy = tmp_path / "params.yaml"
    shutil.copy(PARAMS, copy)
    before = yaml.safe_load(copy.read_text())["eval"]["finetune"]
    apply_overrides(copy, _overrides({"eval.finetune": {"steps": 7}})[1::2])
    after = yaml.safe_load(copy.read_text())["eval"]["finetune"]
    assert after == {**before, "steps": 7}


def test_unfinished_are_the_queued_and_running_experiments_of_the_queue():
    tasks = [
        {"name": "a-s0", "status": "Success"},
        {"name": "a-s1", "status": "Running"},
        {"name": "b-s0", "status": "Queued"},
        {"name": "b-s1", "status": "Failed"},
        {"name": None, "status": "Queued"},  # an unnamed task cannot be one of the comparison's
    ]
    assert unfinished_in(tasks) == {"a-s1", "b-s0"}
    assert unfinished_in([]) == set()


@pytest.mark.parametrize("measured", [494.96, 497.04, 500.95, 12.25])
def test_a_run_and_its_collect_only_report_the_same_wall_time(measured, tmp_path):
    """The run reported its unrounded time and `--collect-only` the recorded one: 8.3 min became 8.2 min."""
    reported, jobs = compare._wall_time(tmp_path, "tiny", measured, jobs=2)
    rebuilt, rebuilt_jobs = compare._wall_time(tmp_path, "tiny", None)
    assert reported == rebuilt == pytest.approx(measured, abs=0.06)
    assert f"{reported / 60:.1f}" == f"{rebuilt / 60:.1f}"
    assert jobs == rebuilt_jobs == 2  # the wall time is reported with how many experiments shared the machine
    assert compare._wall_time(tmp_path, "other", None) == (None, 1)  # a record of another config is not reused


def test_side_by_side_experiments_share_the_cores(monkeypatch):
    """Two torch processes that each take every core run slower together than one after the other: with jobs,
    each experiment's stages get cpus // jobs threads; a user's own setting is kept; one job sets nothing."""
    for key in compare.THREAD_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(compare.os, "cpu_count", lambda: 8)
    assert all(compare.worker_env(2)[key] == "4" for key in compare.THREAD_VARIABLES)
    assert compare.worker_env(16)["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in compare.worker_env(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert compare.worker_env(2)["OMP_NUM_THREADS"] == "3"


def test_dvc_exp_run_takes_the_overrides_including_a_key_params_lacks(dvc_project):
    """What `cssl compare` queues, through the real `dvc exp run -S`: an existing key is replaced and a key that
    params.yaml lacks (a stage's own train block) is created, where a plain `key=value` is refused by DVC."""
    seed = SEEDS[0]  # the toy stage has buffers for its seeds only
    arguments = _overrides({"train.seed": seed, "train.extra": {"lr": 0.5}})
    assert arguments == ["-S", f"++train.seed={seed}", "-S", "++train.extra.lr=0.5"]
    with pytest.raises(subprocess.CalledProcessError):
        dvc(dvc_project, "exp", "run", "-q", "-n", "plain", "-S", "train.extra.lr=0.5")
    dvc(dvc_project, "exp", "run", "-q", "-n", "p", *arguments)
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    assert params["train"]["seed"] == seed and params["train"]["extra"] == {"lr": 0.5}


def test_side_by_side_runs_are_read_once_unless_one_is_queued_again(monkeypatch, tmp_path):
    """With jobs > 1 queue_and_run reads every experiment to find the ones DVC's parallel queue failed; the report
    takes that reading instead of a second `dvc exp show`, unless a failed one ran again since."""
    runs = [("finetune-s0", "finetune", 0, {}), ("finetune-s1", "finetune", 1, {})]
    queued, reads = [], []
    monkeypatch.setattr(compare, "empty_share", lambda share: None)
    monkeypatch.setattr(compare, "_prepare_tracking_store", lambda project: None)
    monkeypatch.setattr(compare, "_queue", lambda project, batch: queued.append([name for name, *_ in batch]))
    monkeypatch.setattr(compare, "_wait_for_queue", lambda *args: None)
    outcomes = iter([{"finetune-s0": {"a": 1}, "finetune-s1": {"a": 2}}])
    monkeypatch.setattr(compare, "collect", lambda project, names: reads.append(names) or (next(outcomes), {}))
    assert compare.queue_and_run(tmp_path, runs, jobs=2) == ({"finetune-s0": {"a": 1}, "finetune-s1": {"a": 2}}, {})
    assert len(reads) == 1 and queued == [["finetune-s0", "finetune-s1"]]

    outcomes = iter([{"finetune-s0": {"a": 1}, "finetune-s1": None}])
    assert compare.queue_and_run(tmp_path, runs, jobs=2) is None  # the report must read the rerun itself
    assert queued[-1] == ["finetune-s1"]
    assert compare.queue_and_run(tmp_path, runs, jobs=1) is None and len(reads) == 2  # one job: no check at all


def test_progress_never_counts_backwards_while_an_experiment_is_committed(monkeypatch, tmp_path, capsys):
    """A poll taken while the worker commits an experiment can count it as running again (seen: 10/27 then 9/27)."""
    polls = iter([(3, 1), (1, 1), (2, 1), (0, 1)])  # (pending, workers); the third poll is the glitch
    monkeypatch.setattr(compare, "_start_worker", lambda project, jobs=1: None)
    monkeypatch.setattr(compare, "queue_status", lambda project: next(polls))
    monkeypatch.setattr(compare, "POLL_SECONDS", 0)
    compare._wait_for_queue(tmp_path, 3, 1, 0.0)
    shown = [line.split()[1] for line in capsys.readouterr().out.splitlines() if "experiments finished" in line]
    assert shown == ["0/3", "2/3", "2/3", "3/3"]
