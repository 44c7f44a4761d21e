"""The DVC DAG end to end on a tiny phantom: first run, no-op re-run, one-branch re-run, privacy, MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from tests.helpers import ATTACKER, find_leaks
from tests.tiny_pipeline import run_in_project as run

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
RAN = re.compile(r"Running stage '([^']+)'")


@pytest.fixture(scope="module")
def project(tiny_pipeline, tmp_path_factory):
    """The session's tiny pipeline (one cold `cssl repro` from raw DICOM), copied: the tests below change it."""
    root = tiny_pipeline.copy(tmp_path_factory.mktemp("dvc") / "project")
    return {"root": root, "first": tiny_pipeline.first, "seconds": tiny_pipeline.seconds}


def test_first_repro_runs_every_stage_and_writes_outputs(project):
    root = project["root"]
    ran = set(RAN.findall(project["first"].stdout))
    cohorts = ("phantom_a", "phantom_b", ATTACKER)
    expected = {f"{kind}@{c}" for kind in ("demo-data", "ingest", "screen") for c in cohorts}
    expected |= {f"{kind}@{c}-{w}" for kind in ("window", "quality") for c in cohorts for w in ("mediastinal", "lung")}
    expected |= {"check", "init", "eval-inputs", "evaluate-init", "report"}
    expected |= {f"{kind}@{s}" for kind in ("pretrain", "export", "audit", "gate", "evaluate") for s in ("s1", "s2")}
    assert ran == expected
    for cohort in ("phantom_a", "phantom_b"):
        files = pd.read_parquet(root / f"data/interim/{cohort}/files.parquet")
        found = [p for p in (root / f"data/raw/{cohort}").rglob("*") if p.is_file()]
        assert len(files) == len(found)
        for window in ("mediastinal", "lung"):
            out = root / f"data/windowed/{cohort}-{window}"
            slices = np.load(out / "slices.npy", mmap_mode="r")
            index = pd.read_parquet(out / "index.parquet")
            assert slices.dtype == np.uint8 and slices.shape[1:] == (32, 32)
            assert len(index) == slices.shape[0] == 20
            report = json.loads((root / f"data/quality/{cohort}-{window}.json").read_text())
            assert report["passed"] is True and report["n_series_excluded"] == 0
    assert (root / "dvc.lock").exists()
    for stage in ("s1", "s2"):
        metrics = json.loads((root / f"data/metrics/pretrain-{stage}.json").read_text())
        assert np.isfinite(metrics["loss_total"]) and metrics["epochs"] == 2
        assert (root / f"data/models/{stage}/model.pt").exists()
    assert json.loads((root / "data/buffers/s2/meta.json").read_text())["kind"] == "latent"
    for stage in ("s1", "s2"):  # the demo buffers leak; the default gate mode warns and lets the run go on
        audit = json.loads((root / f"data/privacy/{stage}.json").read_text())
        assert audit["audited"] and audit["labels_in_buffer"] == []
        verdict = json.loads((root / f"data/privacy/{stage}.gate.json").read_text())
        assert verdict["mode"] == "warn" and (root / f"data/privacy/{stage}.cleared.json").is_file()
        assert (root / f"data/privacy/{stage}.png").stat().st_size > 0


def test_report_has_every_r_matrix_and_the_registered_encoder_embeds_a_slice(project):
    import mlflow
    import torch

    root = project["root"]
    from cssl_core.reporting.tree import matrix_from_tree, ordered_names

    report = json.loads((root / "data/summary/metrics.json").read_text())
    assert ordered_names(report, "stages") == ["s1", "s2"]
    recon = matrix_from_tree(report, "recon")
    assert recon.shape == (2, 2) and np.isfinite(recon[1]).all() and np.isnan(recon[0, 1])
    assert np.isfinite(report["recon"]["bwt"]) and 0 < report["cka"]["R"]["s2"]["s1"] <= 1.0 + 1e-6
    # through each model's own decoder: on a stage's own slices that decoder is the one `recon` uses, so evaluate
    # reuses that number and the diagonals agree exactly; off the diagonal it is a second, finite measurement
    own = matrix_from_tree(report, "recon_own")
    np.testing.assert_array_equal(np.diag(own), np.diag(recon))
    assert np.isfinite(own[1, 0]) and (root / "data/report/figures/R_recon_own.png").stat().st_size > 0
    for key in ("linear@1.0", "attentive@1.0", "token@1.0"):
        assert matrix_from_tree(report, key).shape == (2, len(ordered_names(report, "tasks")))
    assert "pixels@1.0" in report
    assert report["cost"]["keeps_raw_images"] is False and report["cost"]["buffer_bytes"] > 0
    assert (root / "data/report/figures/R_recon.png").stat().st_size > 0
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    encoder = mlflow.pytorch.load_model("models:/cssl-encoder@best")
    from cssl_core.models.io import load_model

    final, _ = load_model(root / "data/models/s2")
    for batch in (1, 4):  # the export used to specialise the batch to 1 and warn about it at every report
        x = torch.rand(batch, 1, 32, 32)
        tokens = encoder(x)
        assert tokens.shape == (batch, 16, 32) and torch.isfinite(tokens).all()
        with torch.no_grad():
            torch.testing.assert_close(tokens, final.eval()(x), atol=1e-5, rtol=1e-4)
    logs = project["first"].stdout + project["first"].stderr
    assert "0/1 specialized" not in logs and "Guard failed" not in logs


def test_second_repro_does_nothing_quickly(project):
    started = time.perf_counter()
    again = run([sys.executable, "-m", "dvc", "repro"], project["root"])
    elapsed = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert RAN.findall(again.stdout) == []
    assert elapsed < 20, f"no-op repro took {elapsed:.1f}s"


def _digests(root: Path, paths: list[str]) -> dict[str, str]:
    import hashlib

    files = [f for p in paths for f in ([root / p] if (root / p).is_file() else sorted((root / p).rglob("*")))]
    return {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def test_forcing_evaluate_or_report_changes_no_output_and_no_later_stage(project):
    import mlflow

    root = project["root"]
    outputs = ["data/eval", "data/summary", "data/report/figures"]
    before = _digests(root, outputs)
    assert "data/eval/s1.json" in before and "data/summary/metrics.json" in before

    forced = run([sys.executable, "-m", "dvc", "repro", "--single-item", "-f", "evaluate@s1"], root)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert RAN.findall(forced.stdout) == ["evaluate@s1"]
    assert _digests(root, outputs) == before  # the timing went to data/metrics/evaluate-s1.json only
    assert json.loads((root / "data/metrics/evaluate-s1.json").read_text())["seconds"] > 0
    assert re.search(r"evaluate@s1 probe (\d+)/\1: ", forced.stdout)  # progress over tasks x probes
    status = run([sys.executable, "-m", "dvc", "status", "--json"], root)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout  # evaluate@s2, report clean

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    versions = len(mlflow.MlflowClient().search_model_versions("name='cssl-encoder'"))
    forced = run([sys.executable, "-m", "dvc", "repro", "--single-item", "-f", "report"], root)
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert _digests(root, outputs) == before
    assert re.search(r"report step (\d+)/\1: registry", forced.stdout)
    assert len(mlflow.MlflowClient().search_model_versions("name='cssl-encoder'")) == versions == 1
    status = run([sys.executable, "-m", "dvc", "status", "--json"], root)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout


def test_lost_screen_init_and_evaluate_outputs_come_back_from_the_run_cache(project):
    """`cssl compare` runs each experiment in a fresh workspace, where only DVC's run-cache can spare a stage
    from re-running; DVC saves none for a stage with an uncached (`cache: false`) out, which made every
    experiment re-run the four screens, init and evaluate-init (measured ~45 s an experiment)."""
    import shutil

    root = project["root"]
    lost = ["data/quality/phantom_a.passed.json", "data/models/init", "data/privacy/init.json",
            "data/eval/init.json", "data/eval/s1.json"]  # fmt: skip
    before = _digests(root, lost)
    for path in lost:
        target = root / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    again = run([sys.executable, "-m", "dvc", "repro"], root)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert RAN.findall(again.stdout) == []
    restored = set(re.findall(r"Stage '([^']+)' is cached - skipping run", again.stdout))
    assert {"screen@phantom_a", "init", "evaluate-init", "evaluate@s1"} <= restored
    assert _digests(root, lost) == before


def test_changing_one_window_reruns_only_its_branch(project):
    root = project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["window"]["presets"]["lung"]["level"] = -550
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run([sys.executable, "-m", "dvc", "repro"], root)
    assert result.returncode == 0, result.stdout[-3000:]
    # the lung branch of both cohorts, and the continual stage trained on phantom_b's lung slices
    assert set(RAN.findall(result.stdout)) == {
        "window@phantom_a-lung",
        "window@phantom_b-lung",
        "quality@phantom_a-lung",
        "quality@phantom_b-lung",
        f"window@{ATTACKER}-lung",
        f"quality@{ATTACKER}-lung",
        "check",
        "pretrain@s2",
        "export@s2",
        "audit@s2",
        "gate@s2",
        "eval-inputs",
        "evaluate-init",
        "evaluate@s1",
        "evaluate@s2",
        "report",
    }
    meta = json.loads((root / "data/windowed/phantom_a-lung/meta.json").read_text())
    assert meta["window"]["level"] == -550


def test_no_identifier_leaves_ingestion(project):
    root = project["root"]
    needles = {"PHIMARK"}
    for path in (root / "data/raw").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        needles |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.PatientID)}
    outputs = [p for p in (root / "data").iterdir() if p.name != "raw"]
    outputs += [root / "dvc.lock", root / "mlflow.db"]
    outputs += [p for p in [root / "mlartifacts"] if p.exists()]
    assert find_leaks(outputs, needles) == []
    logs = project["first"].stdout + project["first"].stderr
    assert not [n for n in needles if n in logs]


def test_stage_runs_are_grouped_under_one_parent(project):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project['root'] / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cssl-pipeline"], output_format="pandas")
    parents = runs[runs["tags.mlflow.runName"] == "pipeline"]
    assert len(parents) >= 1
    first_parent = parents.sort_values("start_time").iloc[0]["run_id"]
    children = runs[runs["tags.mlflow.parentRunId"] == first_parent]
    assert len(children) == 32  # one per stage: 3 cohorts x 2 windows, 2 continual stages with their audits
    ingest = children[children["tags.cssl.stage"] == "ingest@phantom_a"].iloc[0]
    assert ingest["metrics.n_series"] == 2
    window = children[children["tags.cssl.stage"] == "window@phantom_a-lung"].iloc[0]
    assert window["metrics.slices"] == 20 and window["params.level"] == "-600.0"


def test_changing_stage_two_params_reruns_only_stage_two(project):
    root = project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["continual"]["stages"]["s2"]["train"] = {"epochs": 3}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run([sys.executable, "-m", "dvc", "repro"], root)
    assert result.returncode == 0, result.stdout[-3000:]
    # check and eval-inputs re-run on any params.yaml / continual.stages edit, and write the same bytes; gate@s2
    # re-runs only if the audit's figures moved (DVC skips it, or restores it from its run-cache, otherwise)
    ran = set(RAN.findall(result.stdout))
    required = {"check", "eval-inputs", "pretrain@s2", "export@s2", "audit@s2", "evaluate@s2", "report"}
    assert required <= ran <= required | {"gate@s2"}, ran
    assert json.loads((root / "data/metrics/pretrain-s2.json").read_text())["epochs"] == 3


def test_killed_stage_resumes_to_identical_weights(project):
    import signal

    import torch

    root = project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["continual"]["stages"]["s2"]["train"] = {"epochs": 12}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    checkpoints = root / "data/checkpoints/s2"  # one directory per configuration: <key>/last.pt, prev.pt
    import shutil

    from cssl_core.train import load_latest

    shutil.rmtree(checkpoints)  # the previous test's finished checkpoint must not be mistaken for this run's
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "pretrain@s2", "--single-item"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        run_dirs = [p for p in checkpoints.glob("*") if p.is_dir()]
        with contextlib.suppress(OSError, RuntimeError):  # last.pt is renamed to prev.pt on every save
            if run_dirs and torch.load(run_dirs[0] / "last.pt", weights_only=False)["epoch"] >= 1:
                break
        time.sleep(0.05)
    assert process.poll() is None, "the stage finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = load_latest(run_dirs[0])["epoch"]
    assert 1 <= killed_at < 12

    resumed = run([sys.executable, "-m", "dvc", "repro", "pretrain@s2", "--single-item"], root)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resumed after epoch {killed_at}" in resumed.stdout
    import mlflow  # the killed process could not end its MLflow run; the resumed stage ended it for it

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    s2_runs = mlflow.search_runs(
        experiment_names=["cssl-pipeline"], output_format="list", filter_string="attributes.run_name = 'pretrain@s2'"
    )
    assert not [r for r in s2_runs if r.info.status == "RUNNING"]
    killed_runs = [r for r in s2_runs if r.info.status == "KILLED"]
    assert len(killed_runs) == 1
    assert killed_runs[0].data.tags["cssl.end_reason"].endswith("marked by the next run of pretrain@s2")
    weights_resumed = torch.load(root / "data/models/s2/model.pt", weights_only=True)
    metrics = json.loads((root / "data/metrics/pretrain-s2.json").read_text())
    history = (root / "data/metrics/pretrain-s2-history.csv").read_text().splitlines()
    assert metrics["epochs"] == 12 and len(history) == 13 and metrics["resumed_from_epoch"] == killed_at
    # the cost counts every epoch's time, the ones before the kill too, not only this invocation's
    epoch_times = [float(row.split(",")[history[0].split(",").index("epoch_time_s")]) for row in history[1:]]
    assert metrics["train_seconds"] == pytest.approx(sum(epoch_times), rel=1e-4)

    shutil.rmtree(root / "data/checkpoints/s2")
    fresh = run([sys.executable, "-m", "dvc", "repro", "pretrain@s2", "--single-item", "--force"], root)
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    assert "resumed" not in fresh.stdout
    weights_fresh = torch.load(root / "data/models/s2/model.pt", weights_only=True)
    assert weights_resumed.keys() == weights_fresh.keys()
    assert all(torch.equal(weights_resumed[k], weights_fresh[k]) for k in weights_fresh)
