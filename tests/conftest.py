"""Keep tests away from the developer's own stores: MLflow, Prefect home and the key secret go to temp dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cssl-tests-"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_SESSION_DIR / 'mlflow.db'}")
os.environ.setdefault("PREFECT_HOME", str(_SESSION_DIR / "prefect"))
os.environ.setdefault("CSSL_SECRET_FILE", str(_SESSION_DIR / "secret.key"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# session fixtures, each built on first use: s3_server, postgres_server, mlflow_server (real servers on 127.0.0.1)
# and tiny_pipeline (the tiny project after one cold `cssl repro`, which end-to-end tests copy)
pytest_plugins = ("tests.servers", "tests.tiny_pipeline")


@pytest.fixture(autouse=True)
def _environment_as_found():
    """Every test leaves os.environ as it found it. Under pytest-xdist a worker runs many modules in one process,
    and a variable one test leaves behind reaches every process a later test starts (Dask's nanny left
    OMP_NUM_THREADS=1 behind: the next tiny pipeline trained on one thread and its weights moved by 1e-10)."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


# Under pytest-xdist (--dist loadfile, --no-loadscope-reorder: pyproject.toml) a worker takes whole modules in
# collection order, so the longest modules go first (each about 10 minutes with the tiny pipeline's build) and the
# second one needs no tiny pipeline: it keeps the other worker busy while the first builds it. Then the other slow
# modules, then the fast ones. The order inside a module never changes.
RUN_FIRST = (
    "tests/e2e/test_compare.py",
    "tests/e2e/test_two_sites.py",
    "tests/e2e/test_dvc_pipeline.py",
    "tests/e2e/test_strategies.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        rank = RUN_FIRST.index(module) if module in RUN_FIRST else len(RUN_FIRST) + 1
        if module not in RUN_FIRST and item.get_closest_marker("slow"):
            rank = len(RUN_FIRST)
        modules[module] = min(rank, modules.get(module, rank))
    order = {id(item): position for position, item in enumerate(items)}
    items.sort(key=lambda item: (modules[item.nodeid.split("::")[0]], order[id(item)]))
