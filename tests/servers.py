"""Real shared stores for tests: an S3-API server, PostgreSQL 15 and an MLflow tracking server on 127.0.0.1.

The fixtures start them through scripts/servers/*.sh, the same commands a user runs by hand, so the scripts
are tested too. Each server gets a free port and a temp dir, is polled until it answers, and is stopped at
the end of the session (SIGTERM/SIGINT, then SIGKILL). Code under test only sees what a real site gives it:
an endpoint URL and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables for S3, a
`postgresql://` URI, an `http://` tracking URI. A missing binary fails the test with one line naming it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts" / "servers"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKET = "cssl-shared"
# what a site's S3 credentials look like to our code; the local test server accepts any pair
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cssl-test-key", "AWS_SECRET_ACCESS_KEY": "cssl-test-secret-0123456789"}
REGION = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server script: this interpreter's bin dir first (moto_server, mlflow, dvc)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def require_binary(name: str, hint: str) -> None:
    """Fail (one line) when a server binary is missing, instead of a traceback from deep inside a script."""
    found = Path(name).exists() if os.sep in name else shutil.which(name, path=server_env()["PATH"])
    if not found:
        pytest.fail(f"{name} not found: {hint}", pytrace=False)


def wait_for(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll `check` until it returns without raising; fail naming `what` and the last error after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not ready after {timeout:.0f} s: {error}", pytrace=False)
            time.sleep(0.2)


def _script(name: str, action: str, env: dict[str, str], timeout: float = 180.0) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPTS / name), action], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/servers/{name} {action} failed: {(done.stderr or done.stdout).strip()}", pytrace=False)


def _server_dir(prefix: str) -> Path:
    # world-traversable: as root, postgres.sh runs the cluster as the postgres user, which must reach it
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    credentials: dict[str, str]

    def client(self):
        """A boto3 S3 client on this endpoint (tests use it to look into the bucket)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@dataclass(frozen=True)
class PostgresServer:
    uri: str  # postgresql://user@127.0.0.1:port/db


@dataclass(frozen=True)
class MlflowServer:
    uri: str  # http://127.0.0.1:port
    artifacts: str  # s3://bucket/prefix the server writes artifacts to


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-API server on 127.0.0.1 with one bucket."""
    require_binary("moto_server", "install the test requirements (requirements/) into this interpreter's env")
    root = _server_dir("cssl-s3-")
    port = free_port()
    env = server_env(S3_HOST="127.0.0.1", S3_PORT=str(port), S3_DIR=str(root))
    _script("s3.sh", "start", env)
    try:
        server = S3Server(f"http://127.0.0.1:{port}", BUCKET, dict(CREDENTIALS))
        wait_for(lambda: server.client().create_bucket(Bucket=BUCKET), f"S3 server on port {port}")
        yield server
    finally:
        _script("s3.sh", "stop", env)
        shutil.rmtree(root, ignore_errors=True)


def _pg_user() -> str:
    return "postgres" if os.geteuid() == 0 else os.environ.get("USER") or __import__("getpass").getuser()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL 15 (initdb + pg_ctl) in a temp dir, listening on 127.0.0.1 only, with an `mlflow` database."""
    require_binary(str(PG_BIN / "pg_ctl"), "install PostgreSQL 15 (apt-get install postgresql-15) or set PG_BIN")
    root = _server_dir("cssl-pg-")
    port = free_port()
    env = server_env(PG_HOST="127.0.0.1", PG_PORT=str(port), PG_DIR=str(root), PG_DB="mlflow", PG_BIN=str(PG_BIN))
    _script("postgres.sh", "start", env)
    try:
        server = PostgresServer(f"postgresql://{_pg_user()}@127.0.0.1:{port}/mlflow")

        def connect() -> None:
            import psycopg2

            psycopg2.connect(server.uri, connect_timeout=2).close()

        wait_for(connect, f"PostgreSQL on port {port}")
        yield server
    finally:
        _script("postgres.sh", "stop", env)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(s3_server: S3Server, postgres_server: PostgresServer) -> Iterator[MlflowServer]:
    """`mlflow server` on PostgreSQL with artifacts proxied into s3://<bucket>/mlflow; clients need only its URL."""
    require_binary("mlflow", "install the requirements (requirements/) into this interpreter's env")
    root = _server_dir("cssl-mlflow-")
    port = free_port()
    artifacts = f"s3://{s3_server.bucket}/mlflow"
    env = server_env(
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_DIR=str(root),
        MLFLOW_WORKERS="1",
        MLFLOW_BACKEND_URI=postgres_server.uri,
        MLFLOW_ARTIFACTS=artifacts,
        MLFLOW_S3_ENDPOINT_URL=s3_server.endpoint,
        **s3_server.credentials,
        **REGION,
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    _script("mlflow.sh", "start", env)
    try:
        server = MlflowServer(f"http://127.0.0.1:{port}", artifacts)

        def health() -> None:
            import urllib.request

            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as answer:
                assert answer.status == 200

        wait_for(health, f"MLflow server on port {port}")
        yield server
    finally:
        _script("mlflow.sh", "stop", env)
        shutil.rmtree(root, ignore_errors=True)
