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
