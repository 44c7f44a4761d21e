"""export@<stage>: a replay.budget larger than the stage is clamped, and the user is told so once."""

from __future__ import annotations

import copy

from cssl_core.config import ProjectConfig
from tasks.export import run_export
from tasks.init_model import run_init
from tasks.pretrain import run_pretrain
from tests.tasks.stage_project import make_stage_project, stage_params


def test_a_budget_larger_than_the_stage_keeps_everything_and_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(make_stage_project(tmp_path))
    params = stage_params("er")  # a raw-image buffer selected by replay.selection and replay.budget
    config = ProjectConfig.from_params(params)
    run_init(config)
    run_pretrain("s1", config)
    large = copy.deepcopy(params)
    large["replay"]["budget"] = 5000
    capsys.readouterr()

    summary = run_export("s1", ProjectConfig.from_params(large))
    n = summary["candidates"]
    assert n > 0 and summary["selected"] == n
    warnings = [line for line in capsys.readouterr().err.splitlines() if "replay.budget" in line]
    assert warnings == [
        f"warning: replay.budget 5000 is larger than the {n} training slices of stage s1; keeping all {n}"
    ]

    small = copy.deepcopy(params)
    small["replay"]["budget"] = n - 1
    assert run_export("s1", ProjectConfig.from_params(small))["selected"] == n - 1
    assert "replay.budget" not in capsys.readouterr().err
