"""Runs left RUNNING by a killed process are ended by the next run of the same stage; live ones are not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tasks import tracking
from tests.helpers import REPO_ROOT

OPEN_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tasks import tracking
    kind, name = sys.argv[1], sys.argv[2]
    opened = tracking.stage_run(name) if kind == "stage" else tracking.pipeline_run(Path(name), driver="test")
    with opened as run:
        print(run.info.run_id, flush=True)
        time.sleep(600)
    """
)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A fresh SQLite store and experiment, shared with the subprocesses through the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    mlflow = tracking.configure(tmp_path)
    return mlflow.MlflowClient()


class RunHolder:
    """A real process that opens a run and keeps it open until killed."""

    def __init__(self, kind: str, name: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_WAIT, kind, name], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        self.run_id = self.process.stdout.readline().strip()
        assert self.run_id, "the subprocess did not open its run"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


@pytest.mark.slow  # three subprocesses importing MLflow
def test_killed_stage_run_is_ended_by_the_next_run_of_that_stage_only(store):
    alive = RunHolder("stage", "ingest@site")
    killed = RunHolder("stage", "ingest@site")
    other_stage = RunHolder("stage", "window@site-lung")
    try:
        killed.kill()
        other_stage.kill()
        assert store.get_run(killed.run_id).info.status == "RUNNING"  # what the bug left behind

        with tracking.stage_run("ingest@site") as run:
            own = run.info.run_id
        ended = store.get_run(killed.run_id)
        assert ended.info.status == "KILLED" and ended.info.end_time is not None
        reason = ended.data.tags[tracking.END_REASON_TAG]
        assert reason.startswith(f"process {killed.process.pid} on {socket.gethostname()} gone")
        assert reason.endswith("marked by the next run of ingest@site")
        assert store.get_run(alive.run_id).info.status == "RUNNING"  # a concurrent run: left alone
        assert store.get_run(other_stage.run_id).info.status == "RUNNING"  # another stage's business
        assert store.get_run(own).info.status == "FINISHED"
        assert store.get_run(own).data.tags[tracking.PID_TAG] == str(os.getpid())
    finally:
        alive.kill()
    with tracking.stage_run("ingest@site"):
        pass
    assert store.get_run(alive.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_killed_pipeline_run_is_ended_by_the_next_pipeline_run(store, tmp_path):
    killed = RunHolder("pipeline", str(tmp_path))
    killed.kill()
    with tracking.pipeline_run(tmp_path, driver="test") as run:
        assert store.get_run(killed.run_id).info.status == "KILLED"
        assert "marked by the next run of pipeline" in store.get_run(killed.run_id).data.tags[tracking.END_REASON_TAG]
        assert run.info.status == "RUNNING"


def test_process_gone_only_when_sure():
    mine = tracking.process_tags()
    assert not tracking.process_gone(mine)
    assert not tracking.process_gone({**mine, tracking.HOST_TAG: "another-host"})  # cannot check: never touched
    assert not tracking.process_gone({})  # a run from before these tags: never touched
    if mine[tracking.START_TAG]:  # /proc: the same pid with another start time is a reused pid
        assert tracking.process_gone({**mine, tracking.START_TAG: str(int(mine[tracking.START_TAG]) + 1)})
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert tracking.process_gone({**mine, tracking.PID_TAG: finished.stdout.strip()})


def test_store_outside_a_project_is_announced(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    tracking.configure()
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: ") and f"creating a new MLflow store {tmp_path.resolve() / 'mlflow.db'}" in note
    tracking.configure()
    assert capsys.readouterr().err == ""  # said once, when the store is new


def test_store_inside_a_project_is_the_project_root_from_a_subfolder(tmp_path, monkeypatch, capsys):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "data" / "raw")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    tracking.configure()
    assert capsys.readouterr().err == "" and (tmp_path / "mlflow.db").is_file()
    assert Path.cwd() == (tmp_path / "data" / "raw").resolve() and not (Path.cwd() / "mlflow.db").exists()


def test_only_a_tracking_server_chooses_the_artifact_root():
    from tasks.tracking import is_server_uri

    assert is_server_uri("http://127.0.0.1:5000") and is_server_uri("HTTPS://mlflow.site.org")
    assert not any(map(is_server_uri, ("sqlite:///x/mlflow.db", "file:///x/mlruns", "/x/mlruns", "postgresql://h/db")))


def test_a_copied_project_is_told_its_store_still_points_at_the_old_folder(tmp_path, monkeypatch, capsys):
    """A copied project loaded its registered model from the old folder, silently (second new-user trial, 12)."""
    import shutil

    old = tmp_path / "old"
    (old / "data").mkdir(parents=True)
    (old / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(old)
    tracking.configure()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # each stage is a new process: MLflow sets it
    tracking.configure()
    assert capsys.readouterr().err == ""  # in place: nothing to say
    shutil.copytree(old, tmp_path / "new")
    monkeypatch.chdir(tmp_path / "new")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: MLflow experiment ") and f"artifacts in {old.resolve() / 'mlartifacts'}" in line
    assert tracking.EXPERIMENT_ENV in line and "scripts/setup.sh" in line
