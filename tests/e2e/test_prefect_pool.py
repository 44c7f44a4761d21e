"""`cssl flow deploy --pool`: a real Prefect server, the deployment `cssl` makes, and a real `prefect worker`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

BIN = Path(sys.executable).parent
POOL, NAME = "cssl-test-pool", "cssl-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """No PREFECT_* of the caller; this checkout first on the path (the venv's editable install points elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        DVC_NO_ANALYTICS="1",
    )
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own SQLite store, as on a site
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def stop(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> int:
    """Signal the process group we started and wait; kill it only if it ignores the signal."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return process.returncode


def tiny_project(root: Path) -> Path:
    """A git + DVC project whose one stage writes a file: the flow finishes in seconds."""
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs:\n      - out.txt\n")
    return root


@pytest.fixture()
def prefect_server(tmp_path: Path):
    """`prefect server start` on a free 127.0.0.1 port, its home and database in tmp; stopped after the test."""
    port = free_port()
    home = tmp_path / "prefect-home"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=clean_env(home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited {server.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server did not answer /api/health within 120 s")
            time.sleep(0.5)
        yield api_url, home
    finally:
        stop(server)
        log.close()


def test_deploy_without_a_server_is_one_error_line(tmp_path):
    result = subprocess.run([str(BIN / "cssl"), "flow", "deploy", "--pool", POOL], cwd=tiny_project(tmp_path / "p"),
                            env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: PREFECT_API_URL is not set: a work pool lives on a Prefect server; start one (`prefect server "
        "start`) and export PREFECT_API_URL=http://127.0.0.1:4200/api"
    ]


@pytest.mark.slow
def test_a_worker_on_the_pool_runs_the_deployed_pipeline(prefect_server, tmp_path):
    api_url, home = prefect_server
    env = clean_env(home, api_url)
    project = tiny_project(tmp_path / "project")

    deployed = subprocess.run([str(BIN / "cssl"), "flow", "deploy", "--pool", POOL, "--name", NAME], cwd=project,
                              env=env, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"to work pool '{POOL}', schedule '0 2 * * *'" in deployed.stdout
    assert f"prefect worker start --pool {POOL}" in deployed.stdout
    again = subprocess.run([str(BIN / "cssl"), "flow", "deploy", "--pool", POOL, "--name", NAME], cwd=project,
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr  # an existing pool and deployment are updated

    def prefect(*args: str) -> str:
        # wide enough that rich does not wrap a long project path across lines (it did under pytest-xdist's
        # deeper temp paths)
        wide = {**env, "COLUMNS": "1000"}
        done = subprocess.run([str(BIN / "prefect"), *args], env=wide, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "process" in prefect("work-pool", "inspect", POOL)
    inspected = prefect("deployment", "inspect", f"cssl-pipeline/{NAME}")
    assert POOL in inspected and "0 2 * * *" in inspected and str(project) in inspected

    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            triggered = prefect("deployment", "run", f"cssl-pipeline/{NAME}")
            run_id = next(line.split("UUID:")[1].strip() for line in triggered.splitlines() if "UUID:" in line)
            deadline, state = time.monotonic() + 150, ""
            while time.monotonic() < deadline:
                state = prefect("flow-run", "inspect", run_id)
                if any(f"'{kind}'" in state or f"StateType.{kind}" in state
                       for kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")):
                    break
                assert worker.poll() is None, worker_log.read_text()
                time.sleep(1)
            assert "StateType.COMPLETED" in state or "'COMPLETED'" in state, state + worker_log.read_text()
            assert POOL in state  # the run went through the pool, not a served process
        finally:
            code = stop(worker, signal.SIGINT)
    log_text = worker_log.read_text()
    assert run_id in log_text, log_text  # this worker picked the run up
    assert code is not None
    assert (project / "out.txt").read_text() == "hello\n"  # the DVC stage ran in the project, not the code root
