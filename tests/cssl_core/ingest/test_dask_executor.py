"""Ingestion on Dask (cssl_core/ingest/executor.py): same bytes as the process pool, a dead worker's series is
re-run and never half-written, and an existing `dask scheduler` + `dask worker`s can be used by address.

Everything here runs real Dask clusters on 127.0.0.1 (a LocalCluster, or scheduler and worker subprocesses that
the test starts and stops), so all but the parsing tests are marked slow.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cssl_core.ingest import executor as executor_module
from cssl_core.ingest.errors import IngestInputError
from cssl_core.ingest.executor import KILL_ONCE_ENV, make_runner, scheduler_address
from cssl_core.ingest.parallel import TaskRunner
from tests.cssl_core.ingest.conftest import Ingested, run_ingest
from tests.cssl_core.ingest.corpus import pycerr_root
from tests.helpers import REPO_ROOT

DASK = Path(sys.executable).with_name("dask")


def _contents(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _assert_same_output(a: Path, b: Path) -> None:
    one, two = _contents(a), _contents(b)
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []
    assert any(name.startswith("volumes/") for name in one)  # not vacuous: volumes were written


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- parsing (fast) -------------------------------------------------------------------------------------------------


def test_executor_forms():
    assert scheduler_address("processes") is None and scheduler_address("dask") is None
    assert scheduler_address("dask://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert isinstance(make_runner("processes", 2), TaskRunner)
    for bad in ("threads", "dask://", "dask://h", "dask://h:0", "tcp://h:1"):
        with pytest.raises(ValueError, match="--executor must be processes, dask or dask://host:port"):
            scheduler_address(bad)


def test_the_process_pool_path_never_imports_dask():
    code = "import sys, cssl_core.ingest.pipeline; print('distributed' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.stdout.strip() == "False"


# -- a LocalCluster (slow) ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dask_gives_the_process_pools_bytes_and_accounting(edge_corpus, edge_ingested_parallel, tmp_path):
    """The edge corpus (quarantines, odd encodings, masks, every accounting reason) through both executors."""
    out = tmp_path / "dask"
    summary = run_ingest(edge_corpus.root, out, workers=2, executor="dask")
    _assert_same_output(edge_ingested_parallel.out, out)
    assert summary == edge_ingested_parallel.summary
    assert summary.n_quarantined > 0 and summary.n_ingested > 0


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["3", None], ids=["set", "unset"])
def test_a_local_cluster_leaves_the_callers_thread_settings_alone(threads, monkeypatch):
    """Dask's nanny sets OMP_NUM_THREADS=1 (and MKL_, OPENBLAS_...) in the caller's os.environ before it spawns a
    worker, and left it there: every process started later from the caller (a pipeline stage training with torch,
    in the test suite the next tiny pipeline) ran on one thread and summed in another order (LayerNorm biases off
    by 1e-10 from a run with the machine's threads). The workers still get Dask's setting (the caller's value where it
has one); the caller keeps its own."""
    from cssl_core.ingest.executor import DaskRunner

    if threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
    with DaskRunner(None, workers=1, progress=False) as runner:
        assert os.environ.get("OMP_NUM_THREADS") == threads
        assert runner.map(os.getenv, ["OMP_NUM_THREADS"]) == [threads or "1"]
    assert os.environ.get("OMP_NUM_THREADS") == threads


@pytest.mark.slow
def test_a_worker_killed_mid_series_is_rerun_and_the_output_is_complete(
    pycerr_ingested, tmp_path, monkeypatch, caplog
):
    """The first series task kills its own worker half-way through writing its volume (test-only hook): Dask
    re-runs the series on a live worker, the half-written file never reaches the output, and the output is the
    process pool's, byte for byte."""
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # the LocalCluster's worker processes inherit it
    out = tmp_path / "dask"
    with caplog.at_level(logging.INFO, logger="cssl_core.ingest.pipeline"):
        summary = run_ingest(pycerr_root(), out, workers=2, executor="dask")
    assert marker.exists(), "the hook never fired: no worker was killed"
    pid = int(marker.read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # that worker process really is gone
    assert "removed 1 partial file(s)" in caplog.text  # the dead attempt did leave half a file in staging
    _assert_same_output(pycerr_ingested.out, out)
    assert summary == pycerr_ingested.summary
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_module, "CONNECT_TIMEOUT_S", 2)
    port = _free_port()
    (tmp_path / "out").mkdir()
    with pytest.raises(IngestInputError) as caught:
        run_ingest(pycerr_root(), tmp_path / "out", executor=f"dask://127.0.0.1:{port}")
    text = str(caught.value)
    assert "\n" not in text and f"tcp://127.0.0.1:{port}" in text and "dask scheduler" in text
    assert list((tmp_path / "out").iterdir()) == []  # nothing written


# -- an existing scheduler and workers (slow) -----------------------------------------------------------------------


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two single-threaded `dask worker`s on 127.0.0.1, started in another working directory
    (so relative paths would not resolve there) and stopped after the test."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    cwd = tmp_path / "cluster"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    logs = [open(cwd / f"{name}.log", "w") for name in ("scheduler", "worker1", "worker2")]  # noqa: SIM115
    common = {"cwd": cwd, "env": env, "stderr": subprocess.STDOUT}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs[0], **common)]
    try:
        for i in (1, 2):
            worker = [str(DASK), "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                      "--no-dashboard", "--local-directory", str(cwd / f"w{i}")]
            procs.append(subprocess.Popen(worker, stdout=logs[i], **common))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


@pytest.mark.slow
def test_an_existing_scheduler_by_address_gives_the_same_bytes(dask_cluster, pycerr_ingested, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    # relative paths on purpose: the workers run in another directory, the runner hands them absolute ones
    (tmp_path / "raw").symlink_to(pycerr_root())
    summary = run_ingest(Path("raw"), Path("out"), workers=1, executor="dask://" + dask_cluster.removeprefix("tcp://"))
    assert time.monotonic() - start < 120
    _assert_same_output(pycerr_ingested.out, tmp_path / "out")
    assert summary == Ingested(tmp_path / "out", summary).summary == pycerr_ingested.summary
