"""MLflow on a real tracking server: PostgreSQL behind it, artifacts proxied into S3, clients with only its URL.

`cssl init-model` (a real stage, in its own process) and the report's `register_final_encoder` log through
tasks/tracking.py to `http://127.0.0.1:<port>`. Neither process has S3 credentials or an S3 endpoint: the
server writes the artifacts. The test then reads everything back three ways: MLflow's client (runs, params,
artifact bytes, registry aliases, `models:/cssl-encoder@best`), the bucket (the artifact objects exist in S3)
and the database (the run and its params are rows in PostgreSQL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cssl_core.layout import INIT, model_dir
from cssl_core.models import build_mae
from cssl_core.models.io import load_model, save_model
from tasks import tracking
from tasks.report import register_final_encoder
from tests.helpers import REPO_ROOT, tiny_params
from tests.servers import MlflowServer, PostgresServer, S3Server

pytestmark = pytest.mark.slow
EXPERIMENT = "cssl-shared-store-test"
CLIENT_ONLY = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", tracking.PARENT_RUN_ENV)


@pytest.fixture
def client_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer) -> Path:
    """A tiny project whose MLflow store is the server; this process holds no S3 credentials."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    for name in CLIENT_ONLY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, EXPERIMENT)
    monkeypatch.chdir(root)
    return root


def _second_encoder() -> None:
    """Another encoder (same config, other weights) saved as stage s2, so the registry gets a second version."""
    init, meta = load_model(model_dir(INIT))
    torch.manual_seed(1)
    other = build_mae(init.config)
    save_model(model_dir("s2"), other, {"model_config": init.config.to_dict(), "strategy": "finetune"})


def test_stage_runs_artifacts_and_registry_live_on_the_server(
    client_project: Path, mlflow_server: MlflowServer, s3_server: S3Server, postgres_server: PostgresServer
):
    import mlflow
    import psycopg2
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "init-model"], cwd=client_project, env=env, capture_output=True,
        text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert not (client_project / "mlflow.db").exists() and not (client_project / "mlartifacts").exists()

    summary = client_project / "summary.json"
    summary.write_text(json.dumps({"average_final": 0.7}) + "\n")
    with tracking.stage_run("report", {"strategy": "finetune"}) as report_run:
        tracking.log_artifact(summary)
        first = register_final_encoder(INIT, 0.7)
    _second_encoder()
    with tracking.stage_run("report", {"strategy": "finetune"}):
        second = register_final_encoder("s2", 0.6)

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    # the server chose the artifact root (its proxy), not a path on this machine
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    init_run = runs[INIT]
    assert init_run.info.status == "FINISHED"
    assert init_run.data.params["seed"] == str(tiny_params()["ssl"]["train"]["seed"])
    assert init_run.data.metrics["parameters"] > 0

    downloaded = Path(client.download_artifacts(report_run.info.run_id, "summary.json", str(client_project / "dl")))
    assert downloaded.read_bytes() == summary.read_bytes()
    keys = s3_server.keys("mlflow/")
    assert any(k.endswith(f"{report_run.info.run_id}/artifacts/summary.json") for k in keys), keys
    assert any(k.endswith("MLmodel") for k in keys), keys

    assert first != second
    assert str(client.get_model_version_by_alias(tracking.MODEL_NAME, "best").version) == first
    assert str(client.get_model_version_by_alias(tracking.MODEL_NAME, "newest").version) == second
    mlflow.set_tracking_uri(mlflow_server.uri)
    encoder = mlflow.pytorch.load_model(f"models:/{tracking.MODEL_NAME}@best")
    model, _ = load_model(model_dir(INIT))
    x = torch.rand(3, 1, model.config.img_size, model.config.img_size)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), model.eval()(x), atol=1e-5, rtol=1e-4)

    # and the bookkeeping is rows in PostgreSQL
    with psycopg2.connect(postgres_server.uri) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'seed'", (init_run.info.run_id,))
        assert cursor.fetchall() == [(init_run.data.params["seed"],)]
        cursor.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s", (tracking.MODEL_NAME,))
        assert dict(cursor.fetchall()) == {"best": int(first), "newest": int(second)}
