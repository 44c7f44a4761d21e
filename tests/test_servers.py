"""The server helpers' failure paths: a missing binary is one line naming it, from the fixture and the script."""

from __future__ import annotations

import subprocess

import pytest

from tests.servers import SCRIPTS, free_port, require_binary


def test_a_missing_binary_fails_with_one_line_naming_it():
    with pytest.raises(pytest.fail.Exception) as failed:
        require_binary("cssl-no-such-server", "install it")
    assert str(failed.value) == "cssl-no-such-server not found: install it"


@pytest.mark.parametrize(("script", "binary"), [("s3.sh", "moto_server"), ("mlflow.sh", "mlflow")])
def test_a_server_script_names_the_missing_binary(tmp_path, script, binary):
    env = {"PATH": "/usr/bin:/bin", "S3_DIR": str(tmp_path), "MLFLOW_DIR": str(tmp_path),
           "MLFLOW_BACKEND_URI": "postgresql://u@127.0.0.1:1/db", "MLFLOW_ARTIFACTS": "s3://b/p",
           "S3_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    done = subprocess.run(["bash", str(SCRIPTS / script), "start"], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: '{binary}' not found on PATH: install"), lines
    assert not list(tmp_path.glob("*.pid"))


def test_postgres_script_names_a_missing_pg_ctl(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PG_DIR": str(tmp_path), "PG_BIN": str(tmp_path / "nowhere")}
    done = subprocess.run(["bash", str(SCRIPTS / "postgres.sh"), "start"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1 and "pg_ctl not found" in done.stderr


def test_postgres_uri_names_the_clusters_owner_and_mlflow_refuses_a_uri_without_user(tmp_path):
    """$USER is empty for root in many shells: the documented postgresql://$USER@... then named no user and the
    server died with only "server exited before it was ready" (second new-user trial, finding 7)."""
    import getpass
    import os

    env = {"PATH": os.environ["PATH"], "PG_DIR": str(tmp_path), "PG_HOST": "127.0.0.1", "PG_PORT": "5999"}
    uri = subprocess.run(["bash", str(SCRIPTS / "postgres.sh"), "uri"], env=env, capture_output=True, text=True)
    owner = "postgres" if os.geteuid() == 0 else getpass.getuser()
    assert uri.returncode == 0 and uri.stdout.strip() == f"postgresql://{owner}@127.0.0.1:5999/mlflow"
    env = {"PATH": os.environ["PATH"], "MLFLOW_DIR": str(tmp_path), "MLFLOW_BACKEND_URI": "postgresql://@127.0.0.1:1/db",
           "MLFLOW_ARTIFACTS": "s3://b/p", "MLFLOW_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPTS / "mlflow.sh"), "start"], env=env, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "names no database user" in lines[0], lines
    assert "postgres.sh uri" in lines[0] and not list(tmp_path.glob("*.pid"))
