"""audit@<stage> on a real (tiny) stage: deterministic for a seed, gate fail/warn, and what a buffer file stores."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest

from cssl_core.config import ConfigError, ProjectConfig
from cssl_core.layout import SPLIT_FILE
from cssl_core.privacy.gate import PrivacyGateError
from cssl_core.replay.buffer import load_buffer
from flows.errors import is_expected, message
from tasks.export import run_export
from tasks.init_model import run_init
from tasks.pretrain import run_pretrain
from tasks.privacy_audit import attacker_data, run_privacy_audit, summary_line
from tasks.privacy_gate import run_privacy_gate
from tests.cssl_core.train.fixtures import write_windowed
from tests.helpers import ATTACKER
from tests.tasks.stage_project import N_PATIENTS, N_SLICES, make_stage_project, stage_params

# a real pretrain, then an export and a full audit (three attacks) per test: minutes, so with the slow tests
pytestmark = pytest.mark.slow


def _with_finding(windowed) -> None:
    """A finding column the export could store (only with replay.keep_labels)."""
    index = pd.read_parquet(windowed / "index.parquet")
    index["has_nodule"] = np.arange(len(index)) % 2 == 0
    index.to_parquet(windowed / "index.parquet")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """init, pretrain@s1 (latent_replay) and its attacker cohort, once; tests chdir into a copy of the state."""
    root = make_stage_project(tmp_path_factory.mktemp("audit"))
    _with_finding(root / "data/windowed/phantom_a-mediastinal")
    write_windowed(root / f"data/windowed/{ATTACKER}-mediastinal", n=16, size=32, n_patients=2, seed=5)
    params = stage_params("latent_replay")
    params["replay"]["budget"] = 6
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        config = ProjectConfig.from_params(params)
        run_init(config)
        run_pretrain("s1", config)
    finally:
        os.chdir(cwd)
    return root, params


def test_the_buffer_has_no_labels_and_its_rows_are_not_in_training_order(stage, monkeypatch):
    root, params = stage
    monkeypatch.chdir(root)
    everything = copy.deepcopy(params)
    everything["ssl"]["strategy"] = "er"  # an image buffer: its rows can be compared with the slices themselves
    everything["replay"]["budget"] = 5000  # keep every training slice, so the order is the only difference
    config = ProjectConfig.from_params(everything)
    run_export("s1", config)
    buffer = load_buffer(root / "data/buffers/s1")
    assert buffer.labels == {}
    assert json.loads((root / "data/buffers/s1/meta.json").read_text())["labels"] == []
    slices = np.load(root / "data/windowed/phantom_a-mediastinal/slices.npy")
    train = np.sort(json.loads((root / "data/models/s1" / SPLIT_FILE).read_text())["train_rows"])
    assert len(train) == len(buffer) == N_SLICES // 2
    flat = slices[train].reshape(len(train), -1)
    positions = [int(np.flatnonzero((flat == row.reshape(-1)).all(axis=1))[0]) for row in buffer.data]
    assert sorted(positions) == list(range(len(train)))  # the same slices ...
    assert positions != list(range(len(train)))  # ... not in training order
    keys = pd.read_parquet(root / "data/windowed/phantom_a-mediastinal/index.parquet")["patient_key"].to_numpy()
    patients = keys[train[positions]]
    assert (patients[1:] != patients[:-1]).any() and len(set(patients)) == N_PATIENTS // 2
    run_export("s1", config)
    assert np.array_equal(load_buffer(root / "data/buffers/s1").data, buffer.data)  # seeded: the same order again


def test_the_audit_is_deterministic_and_flags_stored_labels(stage, monkeypatch):
    root, params = stage
    monkeypatch.chdir(root)
    config = ProjectConfig.from_params(params)
    run_export("s1", config)
    first = run_privacy_audit("s1", config)
    text = (root / "data/privacy/s1.json").read_text()
    assert first["audited"] and first["kind"] == "latent" and first["labels_in_buffer"] == []
    figures = first["figures"]
    assert figures["n_rows"] == figures["n_buffer"] == 6 and figures["n_attacker"] == 16
    assert "gate" not in first and "passed" not in first  # the verdict is gate@s1's, not the attacks'
    verdict = run_privacy_gate("s1", config)
    assert 0.0 <= verdict["ssim_p95"] <= 1.0 and verdict["mode"] == "warn"
    assert first["finding_label"] is None  # the attacker cohort has no finding column
    assert (root / "data/privacy/s1.png").stat().st_size > 0
    assert json.loads((root / "data/metrics/audit-s1.json").read_text())["seconds"] > 0
    run_privacy_audit("s1", config)
    assert (root / "data/privacy/s1.json").read_text() == text

    labelled = copy.deepcopy(params)
    labelled["replay"]["keep_labels"] = True
    labelled_config = ProjectConfig.from_params(labelled)
    run_export("s1", labelled_config)
    assert sorted(load_buffer(root / "data/buffers/s1").labels) == ["nodule"]
    assert run_privacy_audit("s1", labelled_config)["labels_in_buffer"] == ["nodule"]


def test_the_gate_fails_with_one_line_above_its_threshold_and_passes_below(stage, monkeypatch, capsys):
    root, params = stage
    monkeypatch.chdir(root)
    config = ProjectConfig.from_params(params)
    run_export("s1", config)
    run_privacy_audit("s1", config)
    measured = run_privacy_gate("s1", config)["ssim_p95"]
    strict = copy.deepcopy(params)
    strict["privacy"]["gate"] = {"max_ssim_p95": round(measured - 0.01, 3), "max_reid_auc": None, "mode": "fail"}
    with pytest.raises(PrivacyGateError) as caught:
        run_privacy_gate("s1", ProjectConfig.from_params(strict))
    line = message(caught.value)
    assert is_expected(caught.value) and "\n" not in line
    assert "buffer s1" in line and "data/privacy/s1.png" in line and "privacy.gate.max_ssim_p95" in line
    assert json.loads((root / "data/privacy/s1.gate.json").read_text())["passed"] is False  # the file that explains it
    assert not (root / "data/privacy/s1.cleared.json").exists()  # no clearance: nothing downstream may run

    lenient = copy.deepcopy(strict)
    lenient["privacy"]["gate"]["max_ssim_p95"] = 1.0
    capsys.readouterr()
    assert run_privacy_gate("s1", ProjectConfig.from_params(lenient))["passed"] is True
    assert (root / "data/privacy/s1.cleared.json").is_file()
    assert "privacy gate" not in capsys.readouterr().err


def test_an_attacker_cohort_a_stage_trained_on_is_refused():
    """Before any stage runs (the config check), and again by the attacker side before it reads any slice."""
    params = stage_params("latent_replay")
    wrong = copy.deepcopy(params)
    wrong["privacy"]["attacker_cohort"] = "phantom_a"
    with pytest.raises(ConfigError, match="privacy.attacker_cohort: 'phantom_a' is not allowed: stage s1 trains on it"):
        ProjectConfig.from_params(wrong)
    with pytest.raises(ValueError, match="attacker_cohort 'phantom_a' is trained on by stage s1"):
        attacker_data(ProjectConfig.from_params(params), "s1", "phantom_a")


@pytest.mark.parametrize("mode", ["noise", "pool", "aggregate"])
def test_every_buffer_mode_is_exported_and_audited_by_an_attacker_who_knows_it(stage, monkeypatch, mode):
    root, params = stage
    monkeypatch.chdir(root)
    run_export("s1", ProjectConfig.from_params(params))
    plain = np.asarray(load_buffer(root / "data/buffers/s1").data, dtype=np.float32)
    chosen = copy.deepcopy(params)
    chosen["replay"]["privacy"] = {"mode": mode, "min_cluster_size": 3, "min_patients": 2}
    config = ProjectConfig.from_params(chosen)
    summary = run_export("s1", config)
    buffer = load_buffer(root / "data/buffers/s1")
    stored = np.asarray(buffer.data, dtype=np.float32)
    assert summary["privacy_mode"] == mode and summary["selected"] == 6
    if mode == "noise":
        assert stored.shape == plain.shape and not np.allclose(stored, plain, atol=1e-2)
    elif mode == "pool":
        assert stored.shape == (6, plain.shape[1] // 4, plain.shape[2])
    else:
        assert buffer.holds_clusters and int(buffer.counts.sum()) == 6 and (buffer.counts >= 3).all()
        assert json.loads((root / "data/buffers/s1/meta.json").read_text())["form"] == "clusters"
        # no stored row is within epsilon of any lower(x) of the slices it summarises (here: of all 6)
        epsilon = 0.05 * np.linalg.norm(plain.reshape(6, -1), axis=1).mean()
        distance = np.linalg.norm(stored.reshape(len(buffer), 1, -1) - plain.reshape(1, 6, -1), axis=-1)
        assert distance.min() > epsilon
    report = run_privacy_audit("s1", config)
    assert report["mode"] == mode and report["audited"]
    assert report["figures"]["n_rows"] == len(buffer)
    assert 0.0 <= run_privacy_gate("s1", config)["ssim_p95"] <= 1.0
    assert run_privacy_audit("s1", config)["figures"] == report["figures"]  # seeded, mode or not


def test_aggregate_mode_refuses_a_stage_that_cannot_form_one_cluster(stage, monkeypatch):
    root, params = stage
    monkeypatch.chdir(root)
    chosen = copy.deepcopy(params)
    chosen["replay"]["privacy"] = {"mode": "aggregate", "min_cluster_size": 3, "min_patients": 3}
    with pytest.raises(ValueError, match="min_patients=3 patients, but the stage selected 6 slices from 2 patients"):
        run_export("s1", ProjectConfig.from_params(chosen))


def test_a_buffer_that_its_export_would_not_write_is_refused_by_scoring(stage, monkeypatch):
    root, params = stage
    monkeypatch.chdir(root)
    run_export("s1", ProjectConfig.from_params(params))
    other = copy.deepcopy(params)
    other["replay"]["privacy"] = {"mode": "noise"}  # the audit is told another mode than the buffer was written with
    with pytest.raises(ValueError, match="not what its export writes"):
        run_privacy_audit("s1", ProjectConfig.from_params(other))


def test_a_strategy_without_a_buffer_is_reported_with_its_declared_figure(stage, monkeypatch):
    root, params = stage
    monkeypatch.chdir(root)
    plain = copy.deepcopy(params)
    plain["ssl"]["strategy"] = "finetune"
    config = ProjectConfig.from_params(plain)
    run_export("s1", config)
    report = run_privacy_audit("s1", config)
    assert report == json.loads((root / "data/privacy/s1.json").read_text())
    assert report["audited"] is False and "no replay buffer" in report["note"]
    verdict = run_privacy_gate("s1", config)
    assert verdict["passed"] is True and "no replay buffer" in verdict["note"]
    # dvc.yaml declares the PNG as an output of every audit stage: it must exist, saying why it is empty
    assert (root / "data/privacy/s1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dp_mode_is_exported_with_its_ledger_and_audited_with_the_accountants_epsilon(stage, monkeypatch, capsys):
    """dp releases from all the stage's training slices (the selection looks at values), bounds each patient's
    slices, and its spend travels in the buffer's ledger into the audit report beside the attacks' figures."""
    root, params = stage
    monkeypatch.chdir(root)
    chosen = copy.deepcopy(params)
    chosen["replay"]["privacy"] = {"mode": "dp", "dp_epsilon": 4.0, "dp_max_slices_per_patient": 2}
    config = ProjectConfig.from_params(chosen)
    summary = run_export("s1", config)
    train_rows = json.loads((root / "data/models/s1" / SPLIT_FILE).read_text())["train_rows"]
    assert summary["privacy_mode"] == "dp" and summary["selected"] == len(train_rows)  # not the 6 of the budget
    assert 3.9 <= summary["epsilon"] <= 4.0 and summary["delta"] == pytest.approx(0.1 / len(train_rows))
    buffer = load_buffer(root / "data/buffers/s1")
    assert buffer.holds_clusters and [e["stage"] for e in buffer.ledger] == ["s1"]
    report = run_privacy_audit("s1", config)
    assert report["mode"] == "dp" and report["audited"] and report["dp"]["unit"] == "patient"
    assert report["dp"]["stage_epsilon"] == report["dp"]["total_epsilon"] == buffer.ledger[0]["epsilon"]
    figures = report["figures"]  # the patient-level test against cluster statistics is the likelihood ratio
    assert figures["membership_attack"] == "likelihood ratio" and figures["n_queries"] > 0
    assert figures["membership_n_members"] >= 1 and figures["membership_n_non_members"] >= 1
    assert figures["membership_ci_low"] <= figures["membership_auc"] <= figures["membership_ci_high"]
    assert run_privacy_gate("s1", config)["membership_auc"] == figures["membership_auc"]
    assert re.search(r"dp epsilon (3\.9\d|4\.00) this stage / (3\.9\d|4\.00) in total", summary_line(report))


def test_the_audit_patients_are_held_out_of_training_and_are_the_membership_non_members(tmp_path, monkeypatch):
    """ssl.audit_fraction holds patients of the stage's own cohort out of training and validation by design: the
    audit's membership tests take them (and the validation patients) as non-members, and say how many."""
    root = tmp_path / "holdout"
    write_windowed(root / "data/windowed/phantom_a-mediastinal", n=36, size=32, n_patients=6)
    write_windowed(root / f"data/windowed/{ATTACKER}-mediastinal", n=16, size=32, n_patients=2, seed=5)
    params = stage_params("latent_replay")
    params["ssl"].update({"val_fraction": 0.34, "audit_fraction": 0.34})
    params["replay"]["budget"] = 6
    monkeypatch.chdir(root)
    config = ProjectConfig.from_params(params)
    run_init(config)
    run_pretrain("s1", config)
    split = json.loads((root / "data/models/s1" / SPLIT_FILE).read_text())
    assert (split["n_train_patients"], split["n_val_patients"], split["n_audit_patients"]) == (2, 2, 2)
    assert not set(split["audit_rows"]) & set(split["train_rows"])
    run_export("s1", config)
    report = run_privacy_audit("s1", config)
    assert report["non_members"] == {"n_validation_patients": 2, "n_audit_patients": 2}
    figures = report["figures"]
    assert (figures["membership_n_members"], figures["membership_n_non_members"]) == (2, 4)
    assert figures["specificity_pool"] == "held_out"
