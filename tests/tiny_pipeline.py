"""One tiny pipeline per test session, run once from raw DICOM and copied by the end-to-end tests.

Every end-to-end test used to build its own tiny project and run the same upstream stages (demo-data, ingest,
screen, window, quality for every cohort, init, both continual stages) from scratch: a dozen cold runs of one
DAG per suite. The session fixture `tiny_pipeline` runs that DAG once, for real (`cssl repro`, so `dvc repro`
of every stage under one MLflow parent run), and keeps the finished project with its DVC cache and run-cache.
A test then starts from `tiny_pipeline.copy(dest)`: the project as it stood after that first run (outputs,
dvc.lock, checkpoints, MLflow store, its own copy of the cache), where `dvc repro` re-runs exactly what the
test changes. `tiny_pipeline.share_cache(root)` points another project at the same cache instead, so that its
stages whose code, params and inputs equal the tiny pipeline's are restored from DVC's run-cache.

The cold run's own assertions (every stage ran, every output exists) live in tests/e2e/test_dvc_pipeline.py.
Under pytest-xdist the workers share one build: the first to need it builds it under a file lock in the run's
common temp folder, the others wait for it and read its record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from tests.helpers import make_tiny_project

BIN = Path(sys.executable).parent


def project_env() -> dict[str, str]:
    """The environment a user's shell gives `dvc repro`: this interpreter's bin first on PATH, the project's own
    MLflow store (no session-wide tracking URI) and no key secret in the environment."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CSSL_KEY_SECRET", None)
    return env


def run_in_project(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`cmd` in the project at `cwd`, as a user's shell runs it (project_env), output captured."""
    return subprocess.run(cmd, cwd=cwd, env=project_env(), capture_output=True, text=True)


@dataclass(frozen=True)
class TinyPipeline:
    """The finished tiny project. Read it, copy it; never change it (every later test starts from it)."""

    root: Path
    first: subprocess.CompletedProcess  # the cold `cssl repro`: stdout names every stage DVC ran
    seconds: float

    @property
    def cache(self) -> Path:
        return self.root / ".dvc" / "cache"

    def copy(self, dest: Path, params: dict | None = None) -> Path:
        """The finished project at `dest` (its own cache copy, so nothing a test runs there reaches another
        test), with `params` as its params.yaml when given."""
        shutil.copytree(self.root, dest, symlinks=True, ignore=shutil.ignore_patterns("tmp"))
        if params is not None:
            (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return dest

    def share_cache(self, root: Path) -> Path:
        """Point the DVC project at `root` at this pipeline's cache (in .dvc/config.local, which git ignores):
        stages identical to the tiny pipeline's are restored from the run-cache instead of run again."""
        done = run_in_project([sys.executable, "-m", "dvc", "cache", "dir", "--local", str(self.cache)], root)
        assert done.returncode == 0, done.stderr
        return root


def build_tiny_pipeline(base: Path) -> TinyPipeline:
    """Build and run the tiny project under `base`, or read the record of the one a process built there."""
    record = base / "tiny-pipeline.json"
    if record.exists():
        saved = json.loads(record.read_text())
        first = subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
        return TinyPipeline(Path(saved["root"]), first, saved["seconds"])
    root = make_tiny_project(base / "project")
    started = time.perf_counter()
    first = run_in_project([str(BIN / "cssl"), "repro"], root)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    built = TinyPipeline(root, first, time.perf_counter() - started)
    saved = {"root": str(root), "args": first.args, "returncode": first.returncode, "stdout": first.stdout,
             "stderr": first.stderr, "seconds": built.seconds}
    record.write_text(json.dumps(saved))  # written last: a build that failed half-way leaves no record
    return built


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> TinyPipeline:
    """Built on first use only: plain `pytest` (no slow tests) never pays for it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))
    shared = tmp_path_factory.getbasetemp().parent / "tiny-pipeline"  # common to this run's workers
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared) + ".lock"):
        return build_tiny_pipeline(shared)
