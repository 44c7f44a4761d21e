"""The manifest evaluation depends on (cssl_core/evaluation/inputs.py): exactly the folders it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssl_core.config import ProjectConfig
from cssl_core.evaluation.inputs import evaluation_inputs, input_manifest
from tests.helpers import tiny_params


def test_the_inputs_are_the_tasks_and_the_stages_folders_and_no_other():
    params = tiny_params()
    inputs = evaluation_inputs(ProjectConfig.from_params(params))
    tasks = {f"task:{name}" for name in params["eval"]["tasks"]}
    stages = {f"stage:{name}" for name in params["continual"]["stages"]}
    assert set(inputs) == tasks | stages
    assert inputs["task:ggo"] == Path("data/windowed/phantom_b-lung")
    folders = {str(path) for path in inputs.values()}
    assert not any("phantom_c" in folder for folder in folders)  # the attacker cohort: no stage, no task


def test_the_manifest_changes_with_a_file_it_names_and_refuses_a_missing_folder(tmp_path: Path):
    folder = tmp_path / "a-lung"
    folder.mkdir()
    (folder / "slices.npy").write_bytes(b"x" * 10)
    (folder / "index.parquet").write_bytes(b"y")
    first = input_manifest({"task:t": folder})
    assert set(first["task:t"]["files"]) == {"slices.npy", "index.parquet"}
    (tmp_path / "unused-lung").mkdir()  # a folder nobody reads does not enter it
    assert input_manifest({"task:t": folder}) == first
    (folder / "slices.npy").write_bytes(b"x" * 9 + b"z")  # same size, last byte changed
    assert input_manifest({"task:t": folder}) != first
    with pytest.raises(FileNotFoundError, match=r"missing, but eval.tasks.t reads it; its cohort must be in"):
        input_manifest({"task:t": tmp_path / "nowhere"})
