"""Fixtures of tests/flows: tiny real git + DVC projects (built by tests/flows/dvc_project.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.dvc_project import SEEDS, WRITTEN, Experiments, dvc, make_dvc_project


@pytest.fixture
def dvc_project(tmp_path: Path) -> Path:
    return make_dvc_project(tmp_path / "project")


@pytest.fixture(scope="module")
def dvc_experiments(tmp_path_factory: pytest.TempPathFactory) -> Experiments:
    """Two experiments run in turn, e-s3 then e-s4: the workspace ends with e-s4's files, not e-s3's."""
    root = make_dvc_project(tmp_path_factory.mktemp("experiments") / "project")
    written = {}
    for seed in SEEDS:
        dvc(root, "exp", "run", "-q", "-n", f"e-s{seed}", "-S", f"train.seed={seed}")
        written[f"e-s{seed}"] = {path: (root / path).read_text() for path in WRITTEN}
    return Experiments(root, written)
