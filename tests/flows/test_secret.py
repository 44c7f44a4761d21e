"""`cssl ingest` and the site secret: the project's secret from any sub-folder, a refusal outside a project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import tiny_params

CSSL = str(Path(sys.executable).parent / "cssl")
SITE_ENV = ("CSSL_SECRET_FILE", "CSSL_KEY_SECRET", "MLFLOW_TRACKING_URI")


def cssl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real entry point with no site secret or store configured, as on a fresh machine."""
    env = {k: v for k, v in os.environ.items() if k not in SITE_ENV}
    return subprocess.run([CSSL, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_ingest_outside_a_project_refuses_and_writes_nothing(tmp_path):
    (tmp_path / "in").mkdir()
    result = cssl("ingest", "--input", "in", "--output", "out", cwd=tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {tmp_path} is not inside a project") and "--secret-file" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no .cssl/, mlflow.db, mlartifacts/, out/


def patient_keys(output: Path) -> list[str]:
    return sorted(pd.read_parquet(output / "manifest.parquet")["patient_key"])


@pytest.mark.slow
def test_one_secret_per_project_from_any_folder(tmp_path):
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    assert cssl("demo-data", "raw", "--cohort", "phantom_a", "--params", str(params), cwd=tmp_path).returncode == 0
    raw = tmp_path / "raw"
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / "sub").mkdir()

    first = cssl("ingest", "--input", str(raw), "--output", str(project / "a"), cwd=project / "sub")
    secret = project / ".cssl" / "secret.key"
    assert first.returncode == 0, first.stderr
    assert f"created the site secret {secret}" in first.stdout and "note:" not in first.stderr
    assert (project / "mlflow.db").is_file() and not (project / "sub" / "mlflow.db").exists()
    assert not (project / "sub" / ".cssl").exists()

    again = cssl("ingest", "--input", str(raw), "--output", "b", cwd=project)
    assert again.returncode == 0, again.stderr
    assert "created the site secret" not in again.stdout
    assert patient_keys(project / "a") == patient_keys(project / "b")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = cssl("ingest", "--input", str(raw), "--output", "c", "--secret-file", str(secret), cwd=elsewhere)
    assert named.returncode == 0, named.stderr
    assert patient_keys(elsewhere / "c") == patient_keys(project / "a")
    notes = [ln for ln in named.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and f"creating a new MLflow store {elsewhere / 'mlflow.db'}" in notes[0]
